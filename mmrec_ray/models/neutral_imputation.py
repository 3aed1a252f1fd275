"""Neutral Imputation (section 4.2, Fig. 3c): fill the missing modality with a neutral value, then model both
with the two-branch joint network.

Missing conversation -> the mean PE conversation embedding (D,) of the training PEs that had one (the reference's
``SimpleImputer()``, mean strategy). Missing sessions -> one imputed session (V,), by ``fidelity.neutral_imputation
.session``:

- ``column_mode`` (default, the reference: ``SimpleImputer(strategy="most_frequent")`` over the tag columns of the
  training PEs' session rows, one row per (PE, session event)): tag v is on when more than half of those rows have
  it (a tie goes to 0, scikit-learn's smallest-value rule). On typical data no tag is that common, so the imputed
  session is all zeros, which Keras's Masking layer skips: the GRU branch keeps its zero state. Here an all-zero
  imputed session is likewise no step at all (length 0), a non-zero one is a one-step sequence.
- ``most_frequent_session`` (this project before the fidelity review; the paper's wording "the most frequent web
  session"): the most frequent whole max-pooled tag vector among the unique sessions, as a one-step sequence.

The statistics come from every training PE (``statistics_from: training``, the reference fits its imputers on the
whole training split, validation part included: features only, never labels) or from the fitting part only
(``fitting_part``). Never from test PEs.

Network (SPEC 5, Table 2: batch 128, units 128, dropout 0.2): ``JointNetwork``: Dense(units) on the
conversation ∥ masked GRU(units) on the sessions, then the reference's joint head (see ``layers.JointNetwork``).
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

    def __init__(
        self,
        embedding_dim: int,
        vocab_size: int,
        units: int,
        num_items: int,
        dropout: float,
        head: str = "reference",
    ):
        super().__init__()
        self.register_buffer("neutral_conversation", torch.zeros(embedding_dim))  # (D,)
        self.register_buffer("neutral_session", torch.zeros(vocab_size))  # (V,)
        self.joint = JointNetwork(embedding_dim, vocab_size, units, num_items, dropout, head=head)

    def forward(
        self,
        conversation: torch.Tensor,
        has_conversation: torch.Tensor,
        session_sequence: torch.Tensor,
        session_lengths: torch.Tensor,
    ) -> torch.Tensor:
        conversation = torch.where(has_conversation[:, None], conversation, self.neutral_conversation)
        no_session = session_lengths <= 0
        # An all-zero imputed session is not a step (Keras's Masking skips it): the GRU branch keeps its zero state.
        if bool(no_session.any()) and bool(self.neutral_session.any()):
            if session_sequence.shape[1] == 0:
                session_sequence = session_sequence.new_zeros(
                    (session_sequence.shape[0], 1, session_sequence.shape[2])
                )
            imputed = torch.zeros_like(session_sequence)
            imputed[:, 0] = self.neutral_session
            session_sequence = torch.where(no_session[:, None, None], imputed, session_sequence)
            session_lengths = torch.where(no_session, torch.ones_like(session_lengths), session_lengths)
        return self.joint(conversation, session_sequence, session_lengths)


def neutral_conversation(data, indices: np.ndarray) -> np.ndarray:
    """Mean PE conversation embedding (D,) over the PEs ``indices`` that have a conversation (zeros if none)."""
    with_conversation = indices[np.asarray(data.has_conversation)[indices]]
    if not len(with_conversation):
        return np.zeros(data.embedding_dim, dtype=np.float32)
    embeddings = np.asarray(data.pe_conversation_embedding)[with_conversation].astype(np.float64)
    return embeddings.mean(0).astype(np.float32)


def column_mode_session(store: FeatureStore, indices: np.ndarray) -> np.ndarray:
    """(V,) float32: per tag, the most frequent value over the session rows of PEs ``indices`` — one row per
    (PE, session event), so a session re-included in a later PE's history counts once per PE, as the reference's
    merged table does. Binary columns: 1 where strictly more than half of the rows have the tag."""
    rows = store.session_rows[torch.as_tensor(indices, dtype=torch.long, device=store.device)]
    rows = rows[rows >= 0].cpu().numpy()
    if not len(rows):
        return np.zeros(store.vocab_size, dtype=np.float32)
    ones = np.asarray(store.data.session_tags)[rows].astype(np.int64).sum(0)
    return (2 * ones > len(rows)).astype(np.float32)


def most_frequent_session(store: FeatureStore, indices: np.ndarray) -> np.ndarray:
    """(V,) float32: the most frequent whole tag vector among the unique sessions of PEs ``indices`` (a session
    re-included in a later PE's history is the same session); ties go to the lexicographically smallest vector."""
    session_rows = store.session_rows[torch.as_tensor(indices, dtype=torch.long, device=store.device)]
    rows = torch.unique(session_rows[session_rows >= 0]).cpu().numpy()
    if not len(rows):
        return np.zeros(store.vocab_size, dtype=np.float32)
    vectors, counts = np.unique(np.asarray(store.data.session_tags)[rows], axis=0, return_counts=True)
    return vectors[int(np.argmax(counts))].astype(np.float32)


def neutral_values(
    store: FeatureStore, indices: np.ndarray, session_rule: str = "column_mode"
) -> tuple[np.ndarray, np.ndarray]:
    """(neutral conversation (D,), neutral session (V,)) over the PEs ``indices`` (see the module docstring)."""
    indices = np.asarray(indices)
    if session_rule == "column_mode":
        session = column_mode_session(store, indices)
    elif session_rule == "most_frequent_session":
        session = most_frequent_session(store, indices)
    else:
        raise ValueError(f"unknown neutral session rule {session_rule!r}")
    return neutral_conversation(store.data, indices), session


@register
class NeutralImputationRecommender(NetworkRecommender):
    name = "neutral_imputation"
    trains_on = "all"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.neutral: tuple[np.ndarray, np.ndarray] | None = None

    def prepare(self, store: FeatureStore, train_indices: np.ndarray) -> None:
        switches = self.training.fidelity.neutral_imputation
        pes = train_indices
        if switches.statistics_from == "fitting_part":
            pes, _ = store.data.split_validation(train_indices, self.training.validation_fraction)
        self.neutral = neutral_values(store, pes, switches.session)

    def build_network(self, store: FeatureStore) -> nn.Module:
        network = NeutralImputationNetwork(
            store.embedding_dim,
            store.vocab_size,
            self.params.units,
            store.num_items,
            self.params.dropout,
            head=self.training.fidelity.joint_network.head,
        )
        if self.neutral is not None:
            network.neutral_conversation.copy_(torch.as_tensor(self.neutral[0]))
            network.neutral_session.copy_(torch.as_tensor(self.neutral[1]))
        return network

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(
            batch.pe_conversation, batch.has_conversation, batch.session_sequence, batch.session_lengths
        )
