"""Popular (section 4.2): recommend the items bought most often by the training PEs.

The score of item j for every PE is the number of training PEs that bought j; post-filtering (SPEC 4) happens
at evaluation, so the ranking becomes "the most popular purchasable items". No network, no training loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.registry import register


@register
class Popular(Recommender):
    name = "popular"
    trains_on = "all"
    search_space = {}  # nothing to tune: counts of training purchases

    counts: np.ndarray | None = None  # (J,) float32 purchases per item among training PEs

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        train_indices = store.data.train_indices(self.trains_on)
        targets = store.targets[torch.as_tensor(train_indices, dtype=torch.long, device=store.device)]
        self.counts = targets.sum(dim=0).cpu().numpy().astype(np.float32)
        return FitResult(extra={"num_training_pes": int(len(train_indices))})

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("popular: predict before fit/load_state_dict")
        return np.broadcast_to(self.counts, (len(indices), len(self.counts))).astype(np.float32, copy=True)

    def state_dict(self) -> dict[str, Any]:
        if self.counts is None:
            raise RuntimeError("popular: nothing to save before fit")
        return {"counts": torch.as_tensor(self.counts)}

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.counts = torch.as_tensor(state["counts"]).numpy().astype(np.float32)
