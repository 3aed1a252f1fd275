"""The interface every recommender implements; runners (local `mmrec fit`, Ray Tune, Ray Train) use only this.

A recommender wraps one or more plain ``nn.Module`` networks (defined in the model's own file) and knows how to
fit them with the generic loop in ``mmrec_ray.training.loop``. Multi-stage methods list in ``depends_on`` the
other registry entries whose fitted instances (same seed) they need: teachers, generators, encoders. A runner
fits each of those once per seed and passes them in, so a stage that several models need is never retrained.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import space as spaces
from mmrec_ray.models.space import Space, grid

# The paper's grid (batch and units powers of two, dropout 0.2-0.4): what a model searches unless it declares
# its own `search_space`.
PAPER_GRID: dict[str, Space] = {
    "batch_size": grid([64, 128, 256, 512]),
    "units": grid([64, 128, 256]),
    "dropout": grid([0.2, 0.3, 0.4]),
}

# For classes that still declare only `tunable`: ModelParams' fields searched over the grids configs used to list.
_TUNABLE_SPACES: dict[str, Space] = {**PAPER_GRID, "num_anchors": grid([50, 125, 250])}

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
    # Hyperparameters beyond ModelParams' four, with their defaults: the model reads them as
    # ``self.params.<name>``, a config sets them in ``hyperparameters.<model>.extra`` and searches them in
    # ``tune.spaces.<model>``. A subclass lists only its new ones; its parents' are merged in.
    # learning_rate: None = the run's training.learning_rate; a value (tuned or configured) replaces it for
    # this model's fits only.
    hyperparameters: ClassVar[dict[str, Any]] = {"learning_rate": None}
    # What Tune searches: hyperparameter -> space (mmrec_ray.models.space: grid, choice, uniform, loguniform,
    # randint). Any hyperparameter the model takes may appear; a config changes it with tune.spaces.
    search_space: ClassVar[dict[str, Space]] = PAPER_GRID
    # The names in search_space (derived; `mmrec models` shows them). A subclass that sets only `tunable` (the
    # older declaration) searches those fields with the spaces its parent declares for them.
    tunable: ClassVar[tuple[str, ...]] = tuple(PAPER_GRID)
    # Stages (the EpochCallback's ``stage``) that only prepare the final one, e.g. a pre-trained encoder. Their
    # validation loss measures something else (an MSE over embedding dimensions, not the BCE over items), so
    # Tune neither lets ASHA compare it nor selects on it: every other stage reported is the final stage, at
    # most one per model, and a trial stopped before reaching it cannot win.
    preliminary_stages: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Merge and check the declarations at import, so that a mistake in a model file names the model at once
        rather than surfacing as a failed Tune trial."""
        super().__init_subclass__(**kwargs)
        where = f"{cls.__module__}.{cls.__qualname__}"
        own = cls.__dict__.get("hyperparameters", {})
        inherited = {
            k: v
            for base in reversed(cls.__mro__[1:])
            for k, v in getattr(base, "hyperparameters", {}).items()
        }
        for key, default in own.items():
            if not key.isidentifier() or key in ModelParams.core_fields() or key == "extra":
                raise TypeError(
                    f"{where}.hyperparameters: {key!r} must be a new identifier (not a ModelParams field)"
                )
            if not isinstance(default, (int, float, str, bool, type(None))):
                raise TypeError(
                    f"{where}.hyperparameters.{key}: default {default!r} must be a number, str, bool or None"
                )
        cls.hyperparameters = {**inherited, **own}
        if "search_space" not in cls.__dict__ and "tunable" in cls.__dict__:
            parent = {**_TUNABLE_SPACES, **cls.search_space}  # cls.search_space: still the inherited one
            missing = [f for f in cls.tunable if f not in parent]
            if missing:
                raise TypeError(f"{where}.tunable: no inherited space for {missing}; declare a search_space")
            cls.search_space = {f: parent[f] for f in cls.tunable}
        declared = spaces.declared(cls)
        for key, dimension in cls.search_space.items():
            if key not in declared:
                raise TypeError(
                    f"{where}.search_space: {key!r} is not a hyperparameter of the model; declare it in "
                    f"`hyperparameters` with its default"
                )
            if not isinstance(dimension, Space):
                raise TypeError(
                    f"{where}.search_space.{key}: {dimension!r} is not a Space (grid, choice, ...)"
                )
            problem = spaces.fits_type(dimension, spaces.value_type(declared[key]))
            if problem:
                raise TypeError(f"{where}.search_space.{key}: {problem}")
        cls.tunable = tuple(cls.search_space)

    def __init__(self, params: ModelParams, training: TrainingConfig, seed: int):
        self.params = params.with_defaults(type(self).hyperparameters)
        learning_rate = self.params.extra.get("learning_rate")
        if learning_rate is not None:
            training = dataclasses.replace(training, learning_rate=float(learning_rate))
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
