"""Conversation (section 4.2): a text classifier on the PE's mean sentence embedding; serves only PEs that had
a conversation.

Network (SPEC 5, Table 2: batch 512, units 64, dropout 0.2):
    pe_conversation (B, D) -> Dense(units) -> Dropout -> Dense(units, ReLU) -> Linear(J) logits.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models.layers import DenseEncoder, OutputHead
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register


class ConversationNetwork(nn.Module):
    """forward(conversation (B, D)) -> logits (B, J)."""

    def __init__(self, embedding_dim: int, units: int, num_items: int, dropout: float):
        super().__init__()
        self.encoder = DenseEncoder(embedding_dim, units)
        self.head = OutputHead(units, units, num_items, dropout)

    def forward(self, conversation: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(conversation))


@register
class ConversationRecommender(NetworkRecommender):
    name = "conversation"
    trains_on = "conversation"

    def build_network(self, store: FeatureStore) -> nn.Module:
        return ConversationNetwork(
            store.embedding_dim, self.params.units, store.num_items, self.params.dropout
        )

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.pe_conversation)

    def serves(self, batch: Batch) -> torch.Tensor:
        return batch.has_conversation
