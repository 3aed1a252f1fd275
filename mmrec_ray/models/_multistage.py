"""Helpers shared by the multi-stage models (Knowledge Distillation, Generative Imputation, Relative
Representation): checking and snapshotting the fitted dependencies a runner passes in, and a minimal
example store so that the generic training loop can train on things that are not PEs (single events).

Shapes: B examples in a batch, F features per example, J items, N PEs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from mmrec_ray.config import ModelParams, TrainingConfig, from_dict
from mmrec_ray.data.features import FeatureStore, index_batches
from mmrec_ray.models import registry
from mmrec_ray.models.base import Recommender


def require_dependencies(model: Recommender, dependencies: dict[str, Recommender]) -> dict[str, Recommender]:
    """The fitted dependencies ``model.depends_on`` names, same seed; a clear error when one is missing."""
    missing = [name for name in model.depends_on if name not in dependencies]
    if missing:
        raise ValueError(f"{model.name} needs fitted {missing} (same seed) passed as dependencies")
    wrong_seed = [name for name in model.depends_on if dependencies[name].seed != model.seed]
    if wrong_seed:
        raise ValueError(
            f"{model.name} seed {model.seed}: dependencies {wrong_seed} were fitted with another seed"
        )
    return {name: dependencies[name] for name in model.depends_on}


def snapshot(part: Recommender) -> dict[str, Any]:
    """A fitted dependency as plain data, so that a checkpoint restores without the dependency's own file."""
    return {"params": dataclasses.asdict(part.params), "seed": part.seed, "state": part.state_dict()}


def restore(name: str, entry: dict[str, Any], training: TrainingConfig, store: FeatureStore) -> Recommender:
    """Inverse of ``snapshot``: rebuild registry model ``name`` from its params, seed and state."""
    part = registry.get(name)(from_dict(ModelParams, entry["params"]), training, int(entry["seed"]))
    part.load_state_dict(entry["state"], store)
    return part


def nan_scores(store: FeatureStore, indices: np.ndarray) -> np.ndarray:
    """(n, J) float32 of NaN: what a stage component that serves no PE returns from ``predict``."""
    return np.full((len(np.asarray(indices)), store.num_items), np.nan, dtype=np.float32)


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}


@dataclasses.dataclass
class EventBatch:
    """One batch of single-event examples: ``features`` (B, F) and the owning PE's ``targets`` (B, J)."""

    features: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.features.shape[0])


class EventExamples:
    """Single events as training examples for ``training.loop.train`` (which only needs ``device`` and
    ``iterate``): example ``e`` is feature row ``rows[e]`` of ``table`` with the targets of PE ``pes[e]``.

    Used for the Relative Representation encoders (eqs. 7–10), trained on single conversations / sessions.
    Rows index ``table`` directly (no padding rows: every example is a real event).
    """

    def __init__(self, store: FeatureStore, table: torch.Tensor, rows: np.ndarray, pes: np.ndarray):
        self.device = store.device
        self.num_items = store.num_items
        self.table = table
        self.targets = store.targets
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=self.device)
        self.pes = torch.as_tensor(np.asarray(pes), dtype=torch.long, device=self.device)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def iterate(
        self,
        indices: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ):
        # The batching of FeatureStore.iterate, so a seeded run is repeatable.
        for chunk in index_batches(indices, batch_size, self.device, shuffle, generator):
            yield EventBatch(self.table[self.rows[chunk]], self.targets[self.pes[chunk]])


def modality_events(data, pe_indices: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """Every event of kind ``kind`` in the PEs ``pe_indices``: (rows into that modality's table, owning PE),
    in PE order then chronological order. A conversation re-included in several PEs' histories is one example
    per PE (each with that PE's purchase as its target)."""
    pe_indices = np.asarray(pe_indices)
    kinds = np.asarray(data.event_kind)[pe_indices]
    which_pe, which_step = np.nonzero(kinds == kind)
    pes = pe_indices[which_pe]
    rows = np.asarray(data.event_row)[pes, which_step].astype(np.int64)
    return rows, pes
