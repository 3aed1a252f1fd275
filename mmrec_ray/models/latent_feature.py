"""Latent Feature (section 4.3.3, eq. 4): conversations (mean sentence embeddings) and sessions (max-pooled
tags) are mapped by their own tanh layer into one latent space learned with the task, then modelled by a GRU.

Per event: l_i = tanh(W_c c_i) at conversation steps, tanh(W_s s_i) at session steps (B, T, units), plus the
is_conversation indicator -> (B, T, units + 1).
Network (SPEC 5, Table 2: batch 512, units 256, dropout 0.3):
    masked GRU(units) (eq. 3) -> Dropout -> Dense(units, ReLU) -> Linear(J) logits.

The public reference code runs its GRU over the padded steps too (tanh of the bias, not zeros, so padding
changes the result); here padded steps never enter the recurrence (``MaskedGRU``).
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models.layers import SequenceClassifier, TanhProjection
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register


class LatentFeatureNetwork(nn.Module):
    """forward(is_conversation (B, T) float, event_conversation (B, T, D), event_session (B, T, V),
    lengths (B,)) -> logits (B, J)."""

    def __init__(self, embedding_dim: int, vocab_size: int, units: int, num_items: int, dropout: float):
        super().__init__()
        self.conversation_projection = TanhProjection(embedding_dim, units)  # W_c of eq. (4)
        self.session_projection = TanhProjection(vocab_size, units)  # W_s of eq. (4)
        self.classifier = SequenceClassifier(units + 1, units, num_items, dropout)

    def forward(
        self,
        is_conversation: torch.Tensor,
        event_conversation: torch.Tensor,
        event_session: torch.Tensor,
        lengths: torch.Tensor,
    ) -> torch.Tensor:
        indicator = is_conversation.unsqueeze(-1)
        # The indicator of eq. (4) selects one projection per step (padded steps get the session one; the
        # masked GRU never reads them).
        latent = torch.where(
            indicator > 0,
            self.conversation_projection(event_conversation),
            self.session_projection(event_session),
        )
        return self.classifier(torch.cat([indicator, latent], dim=-1), lengths)


@register
class LatentFeatureRecommender(NetworkRecommender):
    name = "latent_feature"
    trains_on = "all"

    def build_network(self, store: FeatureStore) -> nn.Module:
        return LatentFeatureNetwork(
            store.embedding_dim, store.vocab_size, self.params.units, store.num_items, self.params.dropout
        )

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.is_conversation, batch.event_conversation, batch.event_session, batch.lengths)
