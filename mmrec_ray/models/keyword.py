"""Keyword (section 4.3.2): conversations become multi-hot keyword vectors in the web sessions' tag space, so
every event is a binarised vector; the events, in order, go through one GRU.

Per event (B, T, 1 + V): [is_conversation, keywords (conversation) or max-pooled tags (session, eq. 2)].
Network (SPEC 5, Table 2: batch 512, units 256, dropout 0.2):
    masked GRU(units) (eq. 3) -> Dropout -> Dense(units, ReLU) -> Linear(J) logits.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models.layers import SequenceClassifier
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register


class KeywordNetwork(nn.Module):
    """forward(is_conversation (B, T), event_keywords (B, T, V), lengths (B,)) -> logits (B, J)."""

    def __init__(self, vocab_size: int, units: int, num_items: int, dropout: float):
        super().__init__()
        self.classifier = SequenceClassifier(vocab_size + 1, units, num_items, dropout)

    def forward(
        self, is_conversation: torch.Tensor, event_keywords: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        events = torch.cat([is_conversation.unsqueeze(-1), event_keywords], dim=-1)
        return self.classifier(events, lengths)


@register
class KeywordRecommender(NetworkRecommender):
    name = "keyword"
    trains_on = "all"

    def build_network(self, store: FeatureStore) -> nn.Module:
        return KeywordNetwork(store.vocab_size, self.params.units, store.num_items, self.params.dropout)

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.is_conversation, batch.event_keywords, batch.lengths)
