"""Late Fusion (section 4.2, Fig. 3a): no training of its own; it routes each PE to the separately trained
models: conversations only -> Conversation, sessions only -> Web Session, both -> the mean of the two models'
probabilities. The runner passes the Conversation and Web Session fits of the same seed (seed i with seed i).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mmrec_ray.config import ModelParams, from_dict
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import registry
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.registry import register


@register
class LateFusion(Recommender):
    name = "late_fusion"
    depends_on = ("conversation", "session")
    trains_on = "all"
    search_space = {}  # its parts are tuned on their own

    def __init__(self, params: ModelParams, training, seed: int):
        super().__init__(params, training, seed)
        self.parts: dict[str, Recommender] = {}

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        missing = [name for name in self.depends_on if name not in dependencies]
        if missing:
            raise ValueError(f"late_fusion needs fitted {missing} (same seed) passed as dependencies")
        self.parts = {name: dependencies[name] for name in self.depends_on}
        return FitResult(extra={"seeds": {name: part.seed for name, part in self.parts.items()}})

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if not self.parts:
            raise RuntimeError("late_fusion: predict before fit/load_state_dict")
        indices = np.asarray(indices)
        conversation = self.parts["conversation"].predict(store, indices)
        session = self.parts["session"].predict(store, indices)
        has_conversation = np.asarray(store.data.has_conversation)[indices]
        has_session = np.asarray(store.data.has_session)[indices]
        scores = np.full_like(conversation, np.nan)
        only_conversation = has_conversation & ~has_session
        only_session = has_session & ~has_conversation
        both = has_conversation & has_session
        scores[only_conversation] = conversation[only_conversation]
        scores[only_session] = session[only_session]
        scores[both] = (conversation[both] + session[both]) / 2.0
        return scores.astype(np.float32, copy=False)

    def state_dict(self) -> dict[str, Any]:
        # Self-contained: a checkpoint restores the two component models without their own files.
        return {
            name: {"params": dataclasses.asdict(part.params), "seed": part.seed, "state": part.state_dict()}
            for name, part in self.parts.items()
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.parts = {}
        for name in self.depends_on:
            entry = state[name]
            part = registry.get(name)(
                from_dict(ModelParams, entry["params"]), self.training, int(entry["seed"])
            )
            part.load_state_dict(entry["state"], store)
            self.parts[name] = part
