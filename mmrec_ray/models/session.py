"""Web Session (section 4.2; the session-based recommender of Bruun et al. 2022): a GRU over the PE's web
sessions, each max-pooled over its actions' tags (eq. 2); serves only PEs that had a session.

Network (SPEC 5, Table 2: batch 256, units 256, dropout 0.3):
    session_sequence (B, T, V), session_lengths (B,) -> masked GRU(units) (eq. 3) -> Dropout
        -> Dense(units, ReLU) -> Linear(J) logits.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models.layers import SequenceClassifier
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register


class SessionNetwork(SequenceClassifier):
    """forward(session_sequence (B, T, V), session_lengths (B,)) -> logits (B, J)."""

    def __init__(self, vocab_size: int, units: int, num_items: int, dropout: float):
        super().__init__(vocab_size, units, num_items, dropout)


@register
class SessionRecommender(NetworkRecommender):
    name = "session"
    trains_on = "session"

    def build_network(self, store: FeatureStore) -> nn.Module:
        return SessionNetwork(store.vocab_size, self.params.units, store.num_items, self.params.dropout)

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.session_sequence, batch.session_lengths)

    def serves(self, batch: Batch) -> torch.Tensor:
        return batch.has_session
