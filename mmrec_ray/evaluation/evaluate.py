"""The evaluation protocol (SPEC 6): score every (model, seed) on the test PEs, per subset.

Subsets: ``union`` (all test PEs) and the three PE types ``conversations_only``, ``sessions_only``,
``intersection`` (``PreparedData.subset``). A model is evaluated only on the PEs it serves (a PE is served when it
has scores): a subset it does not serve at all is absent from the output, and ``union`` is reported only for a
model that serves every test PE. Serving only part of a subset is an error — the subsets are what the paper
compares models on, and a mean over a model-chosen part of one would not be comparable.

Outputs:
- ``metrics.csv``: model, seed, subset, metric (hr | map), k, value — the per-seed HR@k / MAP@k.
- ``per_pe.parquet``: model, seed, purchase_event_id, subset, k, hit, ap — one row per served test PE and k;
  ``subset`` is the PE's own type (the union is all of them), so each PE appears once per (model, seed, k).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.data.tensors import SUBSET_NAMES, PreparedData
from mmrec_ray.errors import DataError, MmrecError
from mmrec_ray.evaluation.metrics import DEFAULT_KS, per_pe_metrics
from mmrec_ray.evaluation.predictions import (
    ScoreMatrices,
    check_complete_rows,
    frame_to_matrix,
    load_matrices,
)
from mmrec_ray.io import atomic_write, atomic_write_parquet

UNION = "union"
SUBSETS = (UNION, *SUBSET_NAMES.values())  # union, conversations_only, sessions_only, intersection
METRICS_COLUMNS = ["model", "seed", "subset", "metric", "k", "value"]
PER_PE_COLUMNS = ["model", "seed", "purchase_event_id", "subset", "k", "hit", "ap"]


def resolve_tensors_dir(path: str | Path) -> Path:
    """Accept RUN_DIR (with prepared/tensors) or the tensors folder itself."""
    path = Path(path)
    for candidate in (path, path / "prepared" / "tensors", path / "tensors"):
        if (candidate / "meta.json").exists():
            return candidate
    raise MmrecError(
        f"{path}: no prepared tensors here or in {path / 'prepared' / 'tensors'}; "
        f"run `mmrec prepare --data DATA_DIR --run-dir RUN_DIR` first and pass RUN_DIR"
    )


def load_prepared(path: str | Path) -> PreparedData:
    return PreparedData.load(resolve_tensors_dir(path))


@dataclass
class Evaluation:
    """Per-seed metrics (long form) and per-PE outcomes of every evaluated (model, seed)."""

    metrics: pd.DataFrame  # METRICS_COLUMNS
    per_pe: pd.DataFrame  # PER_PE_COLUMNS

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        metrics_path = atomic_write(
            out_dir / "metrics.csv", lambda p: self.metrics.to_csv(p, index=False, float_format="%.10g")
        )
        per_pe_path = atomic_write_parquet(out_dir / "per_pe.parquet", self.per_pe)
        return {"metrics": metrics_path, "per_pe": per_pe_path}


def evaluate_matrices(
    matrices: ScoreMatrices, data: PreparedData, ks: Sequence[int] = DEFAULT_KS
) -> Evaluation:
    """Evaluate score matrices (model, seed) -> (n_test, J), rows aligned to ``data.test_indices()``."""
    ks = tuple(int(k) for k in ks)
    test_rows = data.test_indices()
    if len(test_rows) == 0:
        raise MmrecError("the prepared data has no test PEs")
    test_ids = np.asarray(data.purchase_event_id, dtype=np.int64)[test_rows]
    targets = np.asarray(data.targets)[test_rows]
    post_filter = np.asarray(data.post_filter)[test_rows]
    subset_code = np.asarray(data.subset)[test_rows]
    subset_name = np.array([SUBSET_NAMES.get(int(c), "unknown") for c in subset_code], dtype=object)

    metric_rows: list[tuple] = []
    per_pe_frames: list[pd.DataFrame] = []
    for (model, seed), scores in sorted(matrices.items()):
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != targets.shape:
            raise MmrecError(
                f"model {model!r} seed {seed}: scores shape {scores.shape} != (test PEs, items) {targets.shape}"
            )
        check_complete_rows(scores, data, f"model {model!r} seed {seed}")
        served = ~np.isnan(scores).all(axis=1)
        for code, name in SUBSET_NAMES.items():
            in_subset = subset_code == code
            n_served = int((served & in_subset).sum())
            if 0 < n_served < int(in_subset.sum()):
                first_missing = int(test_ids[np.flatnonzero(in_subset & ~served)[0]])
                raise DataError(
                    f"model {model!r} seed {seed}",
                    f"serves {n_served} of the {int(in_subset.sum())} {name} test PEs (first missing "
                    f"purchase_event_id {first_missing}); a model must serve all or none of a subset's PEs",
                )
        if not served.any():
            continue
        rows = np.flatnonzero(served)
        outcome = per_pe_metrics(scores[rows], targets[rows], post_filter[rows], ks)
        groups = [(name, subset_code[rows] == code) for code, name in SUBSET_NAMES.items()]
        if served.all():
            groups.insert(0, (UNION, np.ones(len(rows), dtype=bool)))
        for name, mask in groups:
            if not mask.any():
                continue
            for c, k in enumerate(ks):
                metric_rows.append((model, seed, name, "hr", k, float(outcome.hits[mask, c].mean())))
                metric_rows.append((model, seed, name, "map", k, float(outcome.ap[mask, c].mean())))
        num_k = len(ks)
        per_pe_frames.append(
            pd.DataFrame(
                {
                    "model": pd.Series([model] * (len(rows) * num_k), dtype=object),
                    "seed": np.full(len(rows) * num_k, seed, dtype=np.int64),
                    "purchase_event_id": np.repeat(test_ids[rows], num_k),
                    "subset": np.repeat(subset_name[rows], num_k),
                    "k": np.tile(np.asarray(ks, dtype=np.int64), len(rows)),
                    "hit": outcome.hits.ravel().astype(np.int8),
                    "ap": outcome.ap.ravel(),
                }
            )
        )
    metrics = pd.DataFrame(metric_rows, columns=METRICS_COLUMNS)
    metrics["seed"] = metrics["seed"].astype(np.int64)
    metrics["k"] = metrics["k"].astype(np.int64)
    per_pe = (
        pd.concat(per_pe_frames, ignore_index=True)
        if per_pe_frames
        else pd.DataFrame({c: pd.Series(dtype=t) for c, t in _PER_PE_DTYPES.items()})
    )
    return Evaluation(metrics=metrics, per_pe=per_pe)


_PER_PE_DTYPES = {
    "model": object,
    "seed": "int64",
    "purchase_event_id": "int64",
    "subset": object,
    "k": "int64",
    "hit": "int8",
    "ap": "float64",
}


def evaluate(
    data: PreparedData | str | Path,
    predictions: pd.DataFrame | Iterable[str | Path],
    ks: Sequence[int] = DEFAULT_KS,
) -> Evaluation:
    """Evaluate predictions (a long-form frame, or Parquet paths) on the test PEs of ``data``.

    ``data``: a PreparedData, a RUN_DIR or a RUN_DIR/prepared/tensors folder.
    """
    if not isinstance(data, PreparedData):
        data = load_prepared(data)
    if isinstance(predictions, pd.DataFrame):
        matrices = frame_to_matrix(predictions, data)
    else:
        matrices = load_matrices(list(predictions), data)
    if not matrices:
        raise MmrecError("no predictions to evaluate")
    return evaluate_matrices(matrices, data, ks)
