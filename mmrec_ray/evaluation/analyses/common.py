"""What the four studies share: where their outputs go, which checkpoints a run has, loading fitted models and
scoring a subset of PEs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.config import ModelParams, TrainingConfig, from_dict
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import SUBSET_NAMES, PreparedData
from mmrec_ray.evaluation.metrics import per_pe_metrics
from mmrec_ray.io import atomic_write
from mmrec_ray.models import registry
from mmrec_ray.models.base import Recommender
from mmrec_ray.training.runner import checkpoint_path, load_checkpoint

JOINT_MODELS = ("keyword", "latent_feature", "relative_representation")  # the paper's section 7 models
ANALYSES_DIR = "analyses"


def analyses_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / ANALYSES_DIR


def checkpoint_seeds(run_dir: str | Path, name: str) -> list[int]:
    """Seeds with a checkpoint of ``name`` in the run (ascending)."""
    folder = Path(run_dir) / "checkpoints" / name
    seeds = []
    for path in folder.glob("seed=*.pt"):
        try:
            seeds.append(int(path.stem.split("=", 1)[1]))
        except ValueError:
            continue
    return sorted(seeds)


def checkpoint_params(run_dir: str | Path, name: str, seed: int) -> ModelParams | None:
    """The hyperparameters ``name`` was fitted with in the main run (so a retraining uses the same ones)."""
    path = checkpoint_path(run_dir, name, seed)
    if not path.exists():
        return None
    from mmrec_ray.training.runner import read_checkpoint

    payload = read_checkpoint(path)
    return from_dict(ModelParams, payload["params"], where=f"{path}: params")


def fitted_params(run_dir: str | Path, names: Sequence[str], seed: int) -> dict[str, ModelParams]:
    """Params of ``names`` and their dependencies from the main run's checkpoints (missing = Table 2)."""
    out = {}
    for name in registry.dependency_order(list(names)):
        params = checkpoint_params(run_dir, name, seed)
        if params is not None:
            out[name] = params
    return out


def _subset_names(data: PreparedData, indices: np.ndarray) -> np.ndarray:
    codes = np.asarray(data.subset)[indices]
    return np.array([SUBSET_NAMES.get(int(c), "unknown") for c in codes], dtype=object)


def _score_outcomes(
    data: PreparedData, indices: np.ndarray, scores: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(served (n,) bool, hit@k (n,), AP@k (n,)) of ``scores`` (n, J) on PEs ``indices``; NaN where not served."""
    served = ~np.isnan(scores).all(axis=1)
    hits = np.full(len(indices), np.nan)
    ap = np.full(len(indices), np.nan)
    if served.any():
        rows = indices[served]
        outcome = per_pe_metrics(
            scores[served], np.asarray(data.targets)[rows], np.asarray(data.post_filter)[rows], (k,)
        )
        hits[served] = outcome.hits[:, 0]
        ap[served] = outcome.ap[:, 0]
    return served, hits, ap


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: frame.to_csv(p, index=False, float_format="%.10g"))


def _say(echo: Callable[[str], None] | None) -> Callable[[str], None]:
    return echo or (lambda _line: None)


def load_fitted(
    run_dir: str | Path, name: str, seed: int, store: FeatureStore, training: TrainingConfig | None = None
) -> Recommender:
    recommender, _ = load_checkpoint(run_dir, name, seed, store, training)
    return recommender


def available_models(run_dir: str | Path, models: Sequence[str]) -> list[str]:
    """Those of ``models`` with at least one checkpoint in the run (in the given order)."""
    return [m for m in models if checkpoint_seeds(run_dir, m)]
