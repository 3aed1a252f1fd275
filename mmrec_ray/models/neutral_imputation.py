"""Neutral Imputation (section 4.2, Fig. 3c): fill the missing modality with a neutral value, then model both
with the two-branch joint network. Missing conversation -> the mean PE conversation embedding of the training
PEs that had one; missing sessions -> a one-step sequence holding the most frequent web session (its
max-pooled tag vector) among the training PEs' sessions.

Network (SPEC 5, Table 2: batch 128, units 128, dropout 0.2): ``JointNetwork``: Dense(units) on the
conversation ∥ masked GRU(units) on the sessions -> Dropout -> Dense(units, ReLU) -> Linear(J).
The imputation statistics come from the fitting part of the training PEs only (never validation or test).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models.layers import JointNetwork
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register


class NeutralImputationNetwork(nn.Module):
    """forward(conversation (B, D), has_conversation (B,), session_sequence (B, T, V), session_lengths (B,))
    -> logits (B, J). The neutral values are buffers (saved with the weights, never trained)."""

    def __init__(self, embedding_dim: int, vocab_size: int, units: int, num_items: int, dropout: float):
        super().__init__()
        self.register_buffer("neutral_conversation", torch.zeros(embedding_dim))  # (D,)
        self.register_buffer("neutral_session", torch.zeros(vocab_size))  # (V,)
        self.joint = JointNetwork(embedding_dim, vocab_size, units, num_items, dropout)

    def forward(
        self,
        conversation: torch.Tensor,
        has_conversation: torch.Tensor,
        session_sequence: torch.Tensor,
        session_lengths: torch.Tensor,
    ) -> torch.Tensor:
        conversation = torch.where(has_conversation[:, None], conversation, self.neutral_conversation)
        no_session = session_lengths <= 0
        if bool(no_session.any()):
            imputed = torch.zeros_like(session_sequence)
            imputed[:, 0] = self.neutral_session
            session_sequence = torch.where(no_session[:, None, None], imputed, session_sequence)
            session_lengths = torch.where(no_session, torch.ones_like(session_lengths), session_lengths)
        return self.joint(conversation, session_sequence, session_lengths)


def neutral_values(store: FeatureStore, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean PE conversation embedding (D,), most frequent session tag vector (V,)) over the PEs ``indices``.

    Sessions are counted once per unique session (a session re-included in a later PE's history is the same
    session); ties go to the lexicographically smallest tag vector, so the choice is deterministic.
    """
    data = store.data
    indices = np.asarray(indices)
    with_conversation = indices[np.asarray(data.has_conversation)[indices]]
    if len(with_conversation):
        conversation = (
            np.asarray(data.pe_conversation_embedding)[with_conversation].astype(np.float64).mean(0)
        )
    else:
        conversation = np.zeros(data.embedding_dim)
    session_rows = store.session_rows[torch.as_tensor(indices, dtype=torch.long, device=store.device)]
    rows = torch.unique(session_rows[session_rows >= 0]).cpu().numpy()
    if len(rows):
        vectors, counts = np.unique(np.asarray(data.session_tags)[rows], axis=0, return_counts=True)
        session = vectors[int(np.argmax(counts))]
    else:
        session = np.zeros(data.vocab_size)
    return conversation.astype(np.float32), session.astype(np.float32)


@register
class NeutralImputationRecommender(NetworkRecommender):
    name = "neutral_imputation"
    trains_on = "all"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.neutral: tuple[np.ndarray, np.ndarray] | None = None

    def prepare(self, store: FeatureStore, train_indices: np.ndarray) -> None:
        fit_part, _ = store.data.split_validation(train_indices, self.training.validation_fraction)
        self.neutral = neutral_values(store, fit_part)

    def build_network(self, store: FeatureStore) -> nn.Module:
        network = NeutralImputationNetwork(
            store.embedding_dim, store.vocab_size, self.params.units, store.num_items, self.params.dropout
        )
        if self.neutral is not None:
            network.neutral_conversation.copy_(torch.as_tensor(self.neutral[0]))
            network.neutral_session.copy_(torch.as_tensor(self.neutral[1]))
        return network

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(
            batch.pe_conversation, batch.has_conversation, batch.session_sequence, batch.session_lengths
        )
