"""The interface every recommender implements; runners (local `mmrec fit`, Ray Tune, Ray Train) use only this.

A recommender wraps one or more plain ``nn.Module`` networks (defined in the model's own file) and knows how to
fit them with the generic loop in ``mmrec_ray.training.loop``. Multi-stage methods list in ``depends_on`` the
other registry entries whose fitted instances (same seed) they need: teachers, generators, encoders. A runner
fits each of those once per seed and passes them in, so a stage that several models need is never retrained.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore

# callback(stage, epoch, train_loss, validation_loss): lets Tune report per epoch (and ASHA stop the trial).
EpochCallback = Callable[[str, int, float, float], None]


@dataclass
class FitResult:
    """What a fit produced besides the weights: per-stage loss curves and the selected epoch."""

    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # stage -> [{epoch, train, val}]
    best_validation_loss: float = float("nan")  # of the final stage: what selection compares
    best_epoch: int = -1
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. alpha/beta, anchor ids


class Recommender(ABC):
    name: ClassVar[str]
    depends_on: ClassVar[tuple[str, ...]] = ()  # registry names fitted first (same seed) and passed to fit
    trains_on: ClassVar[str] = "all"  # "all" | "conversation" | "session" | "both": its training subset
    reported: ClassVar[bool] = True  # False for stage components that never appear in Table 3
    display_name: ClassVar[str | None] = None  # the name tables show; None = evaluation.tables' own lookup
    tunable: ClassVar[tuple[str, ...]] = (
        "batch_size",
        "units",
        "dropout",
    )  # ModelParams fields Tune searches
    # Stages (the EpochCallback's ``stage``) that only prepare the final one, e.g. a pre-trained encoder. Their
    # validation loss measures something else (an MSE over embedding dimensions, not the BCE over items), so
    # Tune neither lets ASHA compare it nor selects on it: every other stage reported is the final stage, at
    # most one per model, and a trial stopped before reaching it cannot win.
    preliminary_stages: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: ModelParams, training: TrainingConfig, seed: int):
        self.params = params
        self.training = training
        self.seed = seed

    @abstractmethod
    def fit(
        self,
        store: FeatureStore,
        dependencies: dict[str, Recommender],
        callback: EpochCallback | None = None,
    ) -> FitResult:
        """Train on the model's own training subset of ``store.data`` (never on test PEs)."""

    @abstractmethod
    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        """Scores (len(indices), J) float32, higher = more likely bought; NaN rows where the model does not
        serve the PE (e.g. Conversation on a session-only PE). Post-filtering is the evaluator's job."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to predict again (torch-saveable)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        """Restore from ``state_dict()``; ``store`` gives the data dimensions."""
