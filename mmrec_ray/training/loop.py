"""The one training loop (minGPT-style: it knows nothing about any model).

Adam, at most ``max_epochs`` epochs, early stopping on validation loss with ``patience``, best weights restored.
A model supplies ``loss_fn(module, batch) -> scalar loss``; models return logits, losses live in ``losses.py``.

As the reference code's Keras defaults (``fidelity``): a fresh module is initialised the Keras way before its first
epoch (``initialisation.py``), Adam's epsilon is 1e-7, and the training batches are reshuffled every epoch.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.training.initialisation import initialise_

LossFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass
class TrainOutcome:
    best_epoch: int  # 1-based epoch whose weights were restored
    best_validation_loss: float
    history: list[dict[str, float]] = field(default_factory=list)  # [{epoch, train, val}]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch Generator for shuffling so runs are bit-for-bit repeatable."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 -- seeds third-party code that uses the legacy global RNG
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def resolve_device(training: TrainingConfig) -> torch.device:
    if training.device == "cuda" or (training.device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


@torch.no_grad()
def evaluate_loss(
    module: nn.Module, loss_fn: LossFn, store: FeatureStore, indices: np.ndarray, batch_size: int
) -> float:
    """Mean per-PE loss over ``indices`` (batches weighted by size)."""
    module.eval()
    total, count = 0.0, 0
    for batch in store.iterate(indices, batch_size):
        total += float(loss_fn(module, batch)) * len(batch)
        count += len(batch)
    return total / max(count, 1)


def train(
    module: nn.Module,
    loss_fn: LossFn,
    store: FeatureStore,
    train_indices: np.ndarray,
    validation_indices: np.ndarray,
    batch_size: int,
    training: TrainingConfig,
    seed: int,
    stage: str = "model",
    callback: Callable[[str, int, float, float], None] | None = None,
    max_epochs: int | None = None,
) -> TrainOutcome:
    """Fit ``module`` in place on ``train_indices``; early-stop on ``validation_indices``; restore the best weights.

    ``callback(stage, epoch, train_loss, val_loss)`` runs after every epoch (Tune reports from it).
    """
    if training.num_threads > 0:
        torch.set_num_threads(training.num_threads)
    generator = seed_everything(seed)
    # After seeding, so the initial weights depend on the seed only (and not on what was built before).
    initialise_(module, training.fidelity.init)
    module.to(store.device)
    optimizer = torch.optim.Adam(
        module.parameters(), lr=training.learning_rate, eps=training.fidelity.adam_epsilon
    )
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(module.state_dict())
    history: list[dict[str, float]] = []
    epochs_without_improvement = 0
    for epoch in range(1, (max_epochs or training.max_epochs) + 1):
        module.train()
        total, count = 0.0, 0
        for batch in store.iterate(train_indices, batch_size, shuffle=True, generator=generator):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(module, batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        train_loss = total / max(count, 1)
        val_loss = evaluate_loss(module, loss_fn, store, validation_indices, max(batch_size, 1024))
        history.append({"epoch": epoch, "train": train_loss, "val": val_loss})
        if callback is not None:
            callback(stage, epoch, train_loss, val_loss)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(module.state_dict())
            epochs_without_improvement = 0
        else:
            epochs_without_improvement += 1
            if epochs_without_improvement >= training.patience:
                break
    module.load_state_dict(best_state)
    module.eval()
    return TrainOutcome(best_epoch=best_epoch, best_validation_loss=best_loss, history=history)
