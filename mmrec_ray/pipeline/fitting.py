"""Model fitting shared by the Tune and Train stages: parameters, dependencies, checkpoints, predictions.

Plain Python/PyTorch on top of the ``Recommender`` contract (``mmrec_ray.models.base``); Ray-free so the Tune
trainable and the Train worker run exactly the same code.
"""

from __future__ import annotations

import dataclasses
import io

import torch

from mmrec_ray.config import ExperimentConfig, ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models.base import FitResult, Recommender
from mmrec_ray.training.runner import (
    checkpoint_payload,
    read_checkpoint,
    resolve_params,
    restore_checkpoint,
)

CHECKPOINT_FILE = "model.pt"  # inside a Tune/Train checkpoint directory


def base_params(cfg: ExperimentConfig, name: str) -> ModelParams:
    """The configured hyperparameters of ``name``: the config's own entry, else the paper's Table 2, with the
    model's own hyperparameters (``Recommender.hyperparameters``) at their defaults where not configured, so that
    trial tables and best configs show every value a fit used."""
    from mmrec_ray.models import registry

    return resolve_params(name, cfg.hyperparameters).with_defaults(registry.get(name).hyperparameters)


def chosen_params(chosen: dict) -> ModelParams:
    """The ModelParams of a best-config entry (``best_configs.yaml``: the params' fields, ``extra`` included,
    beside ``val_loss``/``trial``/``source``)."""
    return ModelParams(
        **{f.name: chosen[f.name] for f in dataclasses.fields(ModelParams) if f.name in chosen}
    )


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


def checkpoint_bytes(model: Recommender, result: FitResult, training: TrainingConfig) -> bytes:
    """A checkpoint (the local runner's format) as bytes, to travel through the object store to other nodes."""
    buffer = io.BytesIO()
    torch.save(checkpoint_payload(model, result, training), buffer)
    return buffer.getvalue()


def load_checkpoint_bytes(
    payload: bytes, store: FeatureStore, training: TrainingConfig, where: str = "checkpoint"
) -> Recommender:
    """Inverse of ``checkpoint_bytes``: rebuild the fitted recommender (name and seed come from the payload).
    Loaded with ``weights_only=True`` (``read_checkpoint``): Train checkpoints come back from shared storage."""
    model, _ = restore_checkpoint(read_checkpoint(payload, where), store, training, where)
    return model
