"""Stage 1 of Relative Representation (eqs. 7–10): a network trained on single events of one modality whose
tanh layer is later read out as that event's latent vector. Shared by the two registry components
``relative_representation.conversation_encoder`` and ``relative_representation.session_encoder`` (one file each).

Training data: every event of the modality in a training PE that has that modality is one example, with the
PE's purchases as its target (a conversation re-included in several PEs' histories is one example per PE). The
validation part is the events of the last ``training.validation_fraction`` of those PEs by id, the project's rule
(the reference takes the last 10 % of the examples, which are sorted by PE id: nearly the same cut, but by events).

Architecture, switch ``fidelity.relative_representation.encoder_head``:

    reference (default; model_relative_representation_step_1.py lines 74-78, step_2.py lines 71-75):
        x (B, F) -> latent = tanh(W x + b) (B, H)  (eq. 7 / 9)
                 -> Dropout(dropout) -> Dense(H, ReLU) -> Linear(J) logits
    linear (eqs. 8 / 10 literally; this project's earlier encoders):
        x (B, F) -> latent = tanh(W x + b) (B, H) -> Linear(J) logits

H = ``params.units``. Loss: eq. (6) with ``fidelity.loss_reduction``. ``predict`` gives NaN rows: an encoder
scores single events, not PEs.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models._multistage import EventExamples, cpu_state, modality_events, nan_scores
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import OutputHead, TanhProjection
from mmrec_ray.training.loop import seed_everything, train
from mmrec_ray.training.losses import multilabel_bce

EncoderHead = Literal["reference", "linear"]
_CHUNK = 65536  # rows encoded at once by ``latent`` (bounds memory on the full event tables)


def modality_table(store: FeatureStore, modality: str) -> torch.Tensor:
    """The per-event feature table (R+1, F) of ``modality`` ("conversation" | "session"); the last row is the
    zero padding row."""
    return store.conversation_table if modality == "conversation" else store.session_table


class SingleEventEncoder(nn.Module):
    """x (B, F) -> latent tanh(W x + b) (B, H) (eq. 7 / 9) -> logits (B, J) through ``head`` (module docstring)."""

    def __init__(self, in_features: int, units: int, num_items: int, dropout: float, head: EncoderHead):
        super().__init__()
        self.head_kind = head
        self.project = TanhProjection(in_features, units)
        if head == "reference":
            self.output: nn.Module = OutputHead(units, units, num_items, dropout)
        elif head == "linear":
            self.output = nn.Linear(units, num_items)
        else:
            raise ValueError(f"unknown encoder head {head!r}; expected 'reference' or 'linear'")

    def latent(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.project(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.output(self.latent(inputs))


class SingleEventEncoderComponent(Recommender):
    """Base of the two encoder components; a subclass sets ``name``, ``modality``, ``event_kind``, ``trains_on``.

    Single-stage: ``fit`` trains one network (stage ``<modality>_encoder``) and returns its best validation loss.
    """

    modality: ClassVar[str]  # "conversation" | "session"
    event_kind: ClassVar[int]  # EVENT_CONVERSATION | EVENT_SESSION
    reported = False

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.encoder: SingleEventEncoder | None = None

    @property
    def stage(self) -> str:
        return f"{self.modality}_encoder"

    def build(self, store: FeatureStore, head: EncoderHead | None = None) -> None:
        seed_everything(self.seed)
        self.encoder = SingleEventEncoder(
            int(modality_table(store, self.modality).shape[1]),
            self.params.units,
            store.num_items,
            self.params.dropout,
            head or self.training.fidelity.relative_representation.encoder_head,
        )

    def _loss(self, network: nn.Module, batch) -> torch.Tensor:
        return multilabel_bce(
            network(batch.features), batch.targets, reduction=self.training.fidelity.loss_reduction
        )

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        data = store.data
        self.build(store)
        fit_pes, validation_pes = data.split_validation(
            data.train_indices(self.trains_on), self.training.validation_fraction
        )
        fit_rows, fit_owner = modality_events(data, fit_pes, self.event_kind)
        validation_rows, validation_owner = modality_events(data, validation_pes, self.event_kind)
        examples = EventExamples(
            store,
            modality_table(store, self.modality),
            np.concatenate([fit_rows, validation_rows]),
            np.concatenate([fit_owner, validation_owner]),
        )
        outcome = train(
            self.encoder,
            self._loss,
            examples,
            np.arange(len(fit_rows)),
            np.arange(len(fit_rows), len(examples)),
            self.params.batch_size,
            self.training,
            self.seed,
            stage=self.stage,
            callback=callback,
        )
        return FitResult(
            history={self.stage: outcome.history},
            best_validation_loss=outcome.best_validation_loss,
            best_epoch=outcome.best_epoch,
            extra={"examples": int(len(examples)), "head": self.encoder.head_kind},
        )

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        return nan_scores(store, indices)

    def state_dict(self) -> dict[str, Any]:
        if self.encoder is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        # The head is saved so that a checkpoint restores its own architecture whatever the current switch says.
        return {"encoder": cpu_state(self.encoder), "head": self.encoder.head_kind}

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.build(store, state["head"])
        self.encoder.load_state_dict(state["encoder"])
        self.encoder.to(store.device)
        self.encoder.eval()

    @torch.no_grad()
    def latent(self, inputs: torch.Tensor) -> torch.Tensor:
        """Latent vectors (R, H) (eq. 7 / 9) of single events (R, F) of this component's modality."""
        if self.encoder is None:
            raise RuntimeError(f"{self.name}: latent before fit/load_state_dict")
        self.encoder.to(inputs.device)
        self.encoder.eval()
        if len(inputs) == 0:
            return inputs.new_zeros((0, self.params.units))
        return torch.cat([self.encoder.latent(chunk) for chunk in inputs.split(_CHUNK)])
