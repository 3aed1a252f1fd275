"""Latent Feature (section 4.3.3, eq. 4): conversations (mean sentence embeddings) and sessions (max-pooled
tags) are mapped by their own tanh layer into one latent space learned with the task, then modelled by a GRU.

Per event, by ``fidelity.latent_feature.projection``:

- ``add_half`` (default, the reference's model_latent_feature.py): two tanh layers of width h = round(units / 2)
  whose outputs are *added* at every step, l_i = tanh(W_c c_i + b_c) + tanh(W_s s_i + b_s), where the absent
  modality's input is zeros (so it contributes tanh of its bias) -> (B, T, h), then the is_conversation indicator
  is appended -> (B, T, h + 1).
- ``select``: eq. (4) as the paper writes it, one projection per step chosen by the indicator, width units
  -> (B, T, units + 1).

Network (SPEC 5, Table 2: batch 512, units 256, dropout 0.3):
    GRU(units) (eq. 3) -> Dropout -> Dense(units, ReLU) -> Linear(J) logits.

Padding (``fidelity.latent_feature.padding``): ``masked`` (default) — padded steps never enter the recurrence
(``MaskedGRU``). ``reference`` reproduces the reference code's defect: its sequences are padded at the front to the
longest history, and Keras's Masking layer only skips a step whose features are all exactly zero — a padded step's
features are tanh(b_c) + tanh(b_s), zero only while both biases are, so once training moves the biases the GRU reads
every padded step before the real ones, and a PE's scores depend on how far it is padded.

Loss weights (``fidelity.latent_feature.sample_weights``): ``reference`` (default) weights each PE's loss in
training *and* validation by its type, from the shares p of the training PEs: conversations-only 2, sessions-only 1,
intersection (2·p_conv + p_sess) / (1 − p_inter) (``pe_type_weights``); ``none`` leaves every PE at 1.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.data.tensors import SUBSET_CONVERSATIONS_ONLY, SUBSET_INTERSECTION, SUBSET_SESSIONS_ONLY
from mmrec_ray.models.layers import MaskedGRU, OutputHead, TanhProjection, left_align_steps
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register
from mmrec_ray.training.losses import multilabel_bce

CONVERSATION_WEIGHT = 2.0  # the reference's w_conversation; sessions-only PEs weigh 1


def pe_type_weights(subset: np.ndarray, train_indices: np.ndarray) -> dict[int, float]:
    """Loss weight per PE type (SUBSET_* -> weight) from the type shares among ``train_indices`` (the whole
    training split, validation part included, as the reference computes them before its validation split)."""
    types = np.asarray(subset)[np.asarray(train_indices)]
    if len(types) == 0:
        raise ValueError("latent_feature: no training PEs to compute the loss weights from")
    share = {
        kind: float(np.mean(types == kind)) for kind in (SUBSET_CONVERSATIONS_ONLY, SUBSET_SESSIONS_ONLY)
    }
    share_intersection = float(np.mean(types == SUBSET_INTERSECTION))
    intersection = (
        (CONVERSATION_WEIGHT * share[SUBSET_CONVERSATIONS_ONLY] + share[SUBSET_SESSIONS_ONLY])
        / (1.0 - share_intersection)
        if share_intersection < 1.0
        else 1.0  # only intersection PEs: every weight is the same, so any constant gives the same model
    )
    return {
        SUBSET_CONVERSATIONS_ONLY: CONVERSATION_WEIGHT,
        SUBSET_SESSIONS_ONLY: 1.0,
        SUBSET_INTERSECTION: intersection,
    }


class LatentFeatureNetwork(nn.Module):
    """forward(is_conversation (B, T) float, event_conversation (B, T, D), event_session (B, T, V),
    lengths (B,)) -> logits (B, J). Events left-aligned; see the module docstring for the switches."""

    def __init__(
        self,
        embedding_dim: int,
        vocab_size: int,
        units: int,
        num_items: int,
        dropout: float,
        projection: str = "add_half",
        padding: str = "masked",
    ):
        super().__init__()
        if projection not in ("add_half", "select"):
            raise ValueError(f"unknown latent_feature projection {projection!r}")
        if padding not in ("masked", "reference"):
            raise ValueError(f"unknown latent_feature padding {padding!r}")
        self.projection, self.padding = projection, padding
        width = round(units / 2) if projection == "add_half" else units
        self.conversation_projection = TanhProjection(embedding_dim, width)  # W_c of eq. (4)
        self.session_projection = TanhProjection(vocab_size, width)  # W_s of eq. (4)
        self.encoder = MaskedGRU(width + 1, units)
        self.head = OutputHead(units, units, num_items, dropout)

    def latent(
        self, is_conversation: torch.Tensor, conversation: torch.Tensor, session: torch.Tensor
    ) -> torch.Tensor:
        """Eq. (4) per event: (..., ) indicator, (..., D) conversation and (..., V) session inputs (zeros where
        the event is of the other kind) -> (..., h) latent features (without the indicator)."""
        if self.projection == "add_half":
            return self.conversation_projection(conversation) + self.session_projection(session)
        return torch.where(
            is_conversation.unsqueeze(-1) > 0,
            self.conversation_projection(conversation),
            self.session_projection(session),
        )

    def forward(
        self,
        is_conversation: torch.Tensor,
        event_conversation: torch.Tensor,
        event_session: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        latent = self.latent(is_conversation, event_conversation, event_session)
        steps = torch.cat([latent, is_conversation.unsqueeze(-1)], dim=-1)  # (B, T, h + 1)
        if self.padding == "reference":
            steps, lengths = _front_padded_keras_mask(steps, lengths)
        return self.head(self.encoder(steps, lengths))


def _front_padded_keras_mask(steps: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's input as a masked GRU sees it: (B, T, F) left-aligned steps -> the steps Keras would read,
    left-aligned, and their count (B,).

    The reference pads at the front to T, and its Masking layer skips exactly the steps whose features are all
    zero. Padded steps (positions >= length here) carry the projections of zero inputs; we move them in front of
    the real steps, drop every all-zero step, and compact the rest: skipping a step in a GRU keeps the state, so
    reading the compacted steps gives the same final state as Keras's masked loop.
    """
    batch, steps_count, _ = steps.shape
    position = torch.arange(steps_count, device=steps.device)
    # Front padding: output position p holds input step p - (T - length) for the real steps, padding before.
    shift = steps_count - lengths.to(torch.long)
    source = (position[None, :] - shift[:, None]) % steps_count  # real steps at the end, padding first
    front_padded = torch.take_along_dim(steps, source[..., None], dim=1)
    keep = front_padded.ne(0).any(dim=-1)  # (B, T): Keras's Masking(mask_value=0.0)
    return left_align_steps(front_padded, keep)


@register
class LatentFeatureRecommender(NetworkRecommender):
    name = "latent_feature"
    trains_on = "all"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.pe_weights: torch.Tensor | None = None  # (N,) loss weight per PE; None = unweighted

    def prepare(self, store: FeatureStore, train_indices: np.ndarray) -> None:
        self.pe_weights = None
        if self.training.fidelity.latent_feature.sample_weights == "reference":
            weights = pe_type_weights(store.data.subset, train_indices)
            subset = np.asarray(store.data.subset)
            per_pe = np.ones(len(subset), dtype=np.float32)
            for kind, weight in weights.items():
                per_pe[subset == kind] = weight
            self.pe_weights = torch.as_tensor(per_pe, device=store.device)

    def build_network(self, store: FeatureStore) -> nn.Module:
        switches = self.training.fidelity.latent_feature
        return LatentFeatureNetwork(
            store.embedding_dim,
            store.vocab_size,
            self.params.units,
            store.num_items,
            self.params.dropout,
            projection=switches.projection,
            padding=switches.padding,
        )

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.is_conversation, batch.event_conversation, batch.event_session, batch.lengths)

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        weights = None if self.pe_weights is None else self.pe_weights[batch.index]
        return multilabel_bce(
            self.logits(network, batch),
            batch.targets,
            reduction=self.training.fidelity.loss_reduction,
            weights=weights,
        )
