"""Model fitting shared by the Tune and Train stages: parameters, dependencies, checkpoints, predictions.

Plain Python/PyTorch on top of the ``Recommender`` contract (``mmrec_ray.models.base``); Ray-free so the Tune
trainable and the Train worker run exactly the same code.
"""

from __future__ import annotations

import dataclasses
import io
import tempfile
from typing import Any

import pandas as pd
import torch

from mmrec_ray.config import ExperimentConfig, ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import registry
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.training.runner import (
    checkpoint_path,
    fit_one,
    load_checkpoint,
    predict_test,
    resolve_params,
    save_checkpoint,
)

CHECKPOINT_FILE = "model.pt"  # inside a Tune/Train checkpoint directory


def base_params(cfg: ExperimentConfig, name: str) -> ModelParams:
    """The configured hyperparameters of ``name``: the config's own entry, else the paper's Table 2."""
    return dataclasses.replace(resolve_params(name, cfg.hyperparameters))


def trial_training(
    training: TrainingConfig, max_epochs: int | None = None, cpus: float = 1.0
) -> TrainingConfig:
    """A trial's training settings: its epoch cap, and torch threads matching the CPUs Ray gave it
    (otherwise every trial spawns one thread per core and two trials on two cores thrash)."""
    threads = training.num_threads or max(1, int(cpus))
    return dataclasses.replace(training, max_epochs=max_epochs or training.max_epochs, num_threads=threads)


def make_store(data, training: TrainingConfig) -> FeatureStore:
    from mmrec_ray.training.loop import resolve_device

    return FeatureStore(data, device=resolve_device(training))


def fit_model(
    name: str,
    seed: int,
    store: FeatureStore,
    params: ModelParams,
    training: TrainingConfig,
    dependencies: dict[str, Recommender],
    callback: EpochCallback | None = None,
) -> tuple[Recommender, FitResult]:
    return fit_one(name, seed, store, params, training, dependencies, callback)


def predictions_frame(model: Recommender, store: FeatureStore) -> pd.DataFrame:
    """Per-PE test scores in the long predictions format (model, seed, purchase_event_id, item_id, score)."""
    return predict_test(model, store)


def tunable_fields(name: str) -> tuple[str, ...]:
    return tuple(getattr(registry.get(name), "tunable", ()))


def params_to_dict(params: ModelParams) -> dict[str, Any]:
    return dataclasses.asdict(params)


def checkpoint_bytes(model: Recommender, result: FitResult, training: TrainingConfig) -> bytes:
    """A checkpoint (the local runner's format) as bytes, to travel through the object store to other nodes."""
    with tempfile.TemporaryDirectory() as tmp:
        return save_checkpoint(tmp, model, result, training).read_bytes()


def load_checkpoint_bytes(payload: bytes, store: FeatureStore, training: TrainingConfig) -> Recommender:
    """Inverse of ``checkpoint_bytes``: rebuild the fitted recommender (name and seed come from the payload)."""
    header = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False)
    name, seed = header["model"], int(header["seed"])
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint_path(tmp, name, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)
        model, _ = load_checkpoint(tmp, name, seed, store, training)
    return model
