"""Relative Representation, stage 1a: the conversation encoder (eqs. 7–8; model_relative_representation_step_1.py).

Registry component ``relative_representation.conversation_encoder`` (``reported=False``): trained on every
conversation event of the training PEs that have conversations, each with its PE's purchases as target;
input the event's mean sentence embedding (D,), latent tanh(W_c c) (units,). Architecture and the
``encoder_head`` switch: ``models._single_event_encoder``. Defaults (reference script): batch 128, units 256,
dropout 0.4 (``configs/hyperparameters.yaml``).
"""

from __future__ import annotations

from mmrec_ray.data.tensors import EVENT_CONVERSATION
from mmrec_ray.models._single_event_encoder import SingleEventEncoderComponent
from mmrec_ray.models.registry import register

CONVERSATION_ENCODER = "relative_representation.conversation_encoder"


@register
class RelativeRepresentationConversationEncoder(SingleEventEncoderComponent):
    name = CONVERSATION_ENCODER
    modality = "conversation"
    event_kind = EVENT_CONVERSATION
    trains_on = "conversation"
