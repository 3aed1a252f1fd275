"""Your own model in one file (README, "Your own model"): a conversation classifier whose depth is a new
hyperparameter, tuned over the search space it declares. tests/pipeline/test_own_model.py tunes and fits this
file.

To use it in `mmrec run`, copy it into mmrec_ray/models/: every module there is registered on import, in the
driver and in every Ray worker. Then `models: [..., my_model]` in a config, and `mmrec models` lists it.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register
from mmrec_ray.models.space import grid


class DeepConversationNetwork(nn.Module):
    """pe_conversation (B, D) -> depth x [Linear(units) -> ReLU -> Dropout] -> Linear(J) logits."""

    def __init__(self, embedding_dim: int, units: int, num_items: int, dropout: float, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        width = embedding_dim
        for _ in range(depth):
            layers += [nn.Linear(width, units), nn.ReLU(), nn.Dropout(dropout)]
            width = units
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_items)

    def forward(self, conversation: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(conversation))


@register
class MyModel(NetworkRecommender):
    name = "my_model"  # the registry key: `models: [my_model]`, file names, trials.csv
    display_name = "Deep Conversation"  # what Table 3, the figures and the report call it
    trains_on = "conversation"  # the PEs it is fitted on (and, with `serves` below, scores)
    # New hyperparameters with their defaults; read as self.params.depth. A config sets one with
    # `hyperparameters: {my_model: {extra: {depth: 3}}}` and searches it with `tune.spaces.my_model.depth`.
    hyperparameters = {"depth": 1}
    # What `mmrec tune` searches unless a config says otherwise: a grid here (the default grid search walks
    # all 12 points); random and optuna search sample the same lists. Fields not listed keep their configured
    # values (batch_size: 256; learning_rate: the run's training.learning_rate).
    search_space = {
        "units": grid([32, 64]),
        "dropout": grid([0.1, 0.3]),
        "depth": grid([1, 2, 3]),
    }

    def build_network(self, store: FeatureStore) -> nn.Module:
        return DeepConversationNetwork(
            store.embedding_dim, self.params.units, store.num_items, self.params.dropout, self.params.depth
        )

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.pe_conversation)

    def serves(self, batch: Batch) -> torch.Tensor:
        return batch.has_conversation
