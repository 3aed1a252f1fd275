"""Relative Representation, stage 1b: the session encoder (eqs. 9–10; model_relative_representation_step_2.py).

Registry component ``relative_representation.session_encoder`` (``reported=False``): trained on every session
event of the training PEs that have sessions, each with its PE's purchases as target; input the session's
multi-hot tag vector (V,), latent tanh(W_s s) (units,). Architecture and the ``encoder_head`` switch:
``models._single_event_encoder``. Defaults (reference script): batch 256, units 256, dropout 0.2
(``configs/hyperparameters.yaml``).
"""

from __future__ import annotations

from mmrec_ray.data.tensors import EVENT_SESSION
from mmrec_ray.models._single_event_encoder import SingleEventEncoderComponent
from mmrec_ray.models.registry import register

SESSION_ENCODER = "relative_representation.session_encoder"


@register
class RelativeRepresentationSessionEncoder(SingleEventEncoderComponent):
    name = SESSION_ENCODER
    modality = "session"
    event_kind = EVENT_SESSION
    trains_on = "session"
