"""Per-PE predictions as Parquet in long form (SPEC 6), so any metric or test can be recomputed later —
including on predictions made elsewhere.

Columns: ``model`` (str), ``seed`` (int), ``purchase_event_id`` (int), ``item_id`` (int), ``score`` (float,
higher = more likely bought, before the post-filter). One row per (model, seed, PE, item). A model that does not
serve a PE (the Conversation model on a sessions-only PE) simply has no rows for it; NaN scores count as absent.

``frame_to_matrix`` turns the long form back into one (n_test, J) score matrix per (model, seed), aligned to the
prepared data's test PEs (ascending PE id) and item columns, with NaN rows for PEs the model does not serve.
Rows for training PEs are ignored (only test PEs are scored); anything that cannot be aligned is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.errors import DataError
from mmrec_ray.io import atomic_write_parquet

COLUMNS = ("model", "seed", "purchase_event_id", "item_id", "score")

ScoreMatrices = dict[tuple[str, int], np.ndarray]  # (model, seed) -> (n_test, J) float64, NaN = not served


def scores_to_frame(
    model: str,
    seed: int,
    purchase_event_ids: np.ndarray,
    item_ids: np.ndarray,
    scores: np.ndarray,
) -> pd.DataFrame:
    """Long-form predictions of one model and seed.

    purchase_event_ids (n,), item_ids (J,), scores (n, J). NaN scores (PEs the model does not serve) are dropped.
    """
    purchase_event_ids = np.asarray(purchase_event_ids, dtype=np.int64)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(purchase_event_ids), len(item_ids)):
        raise ValueError(
            f"scores shape {scores.shape} != ({len(purchase_event_ids)} PEs, {len(item_ids)} items)"
        )
    n, num_items = scores.shape
    keep = ~np.isnan(scores).ravel()
    frame = pd.DataFrame(
        {
            "model": pd.Series([str(model)] * int(keep.sum()), dtype=object),
            "seed": np.full(int(keep.sum()), int(seed), dtype=np.int64),
            "purchase_event_id": np.repeat(purchase_event_ids, num_items)[keep],
            "item_id": np.tile(item_ids, n)[keep],
            "score": scores.ravel()[keep],
        }
    )
    return frame


def _validate(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            source, f"missing column(s) {missing}; predictions need {list(COLUMNS)}", column=missing[0]
        )
    frame = frame.loc[:, list(COLUMNS)].copy()
    if frame["model"].isna().any():
        row = int(np.flatnonzero(frame["model"].isna().to_numpy())[0])
        raise DataError(source, "empty model name", row=row + 2, column="model")
    frame["model"] = frame["model"].astype(str)
    for column in ("seed", "purchase_event_id", "item_id"):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna().to_numpy() | (values.to_numpy(dtype=np.float64) % 1 != 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(
                source, f"expected an integer, got {frame[column].iloc[row]!r}", row=row + 2, column=column
            )
        frame[column] = values.astype(np.int64)
    score = pd.to_numeric(frame["score"], errors="coerce")
    non_numeric = score.isna().to_numpy() & frame["score"].notna().to_numpy()
    if non_numeric.any():
        row = int(np.flatnonzero(non_numeric)[0])
        raise DataError(
            source, f"expected a number, got {frame['score'].iloc[row]!r}", row=row + 2, column="score"
        )
    frame["score"] = score.astype(np.float64)
    return frame


def write_predictions(path: str | Path, frame: pd.DataFrame) -> Path:
    """Write predictions atomically (validated first, so a bad frame never lands on disk)."""
    frame = _validate(frame, str(path))
    return atomic_write_parquet(path, frame.reset_index(drop=True))


def read_predictions(path: str | Path) -> pd.DataFrame:
    """Read one predictions file; errors name the file, the row (header = row 1) and the column."""
    path = Path(path)
    if not path.exists():
        raise DataError(str(path), "predictions file not found")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a corrupt or non-Parquet file
        raise DataError(str(path), f"not a readable Parquet file ({type(exc).__name__}: {exc})") from None
    return _validate(frame.reset_index(drop=True), str(path))


def find_prediction_files(directory: str | Path) -> list[Path]:
    """Every ``*.parquet`` below ``directory`` (sorted; temporary files of atomic writes are skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob("*.parquet") if p.is_file() and not p.name.startswith("."))


def frame_to_matrix(frame: pd.DataFrame, data: PreparedData, source: str = "predictions") -> ScoreMatrices:
    """(model, seed) -> scores (n_test, J) aligned to ``data.test_indices()`` and ``data.item_ids``.

    Errors (DataError naming ``source``, the row — header = row 1 — and the offending id): a PE id not in the
    data, an item id not in the item set, a duplicate (model, seed, PE, item), a served test PE that lacks a
    score for some item. Rows for training PEs are ignored; NaN scores count as absent.
    """
    frame = _validate(frame.reset_index(drop=True), source)
    all_ids = np.asarray(data.purchase_event_id, dtype=np.int64)
    item_ids = np.asarray(data.item_ids, dtype=np.int64)
    test_rows = data.test_indices()
    num_test, num_items = len(test_rows), len(item_ids)

    pe = frame["purchase_event_id"].to_numpy()
    pe_order = np.argsort(all_ids, kind="stable")
    pe_pos = np.searchsorted(all_ids, pe, sorter=pe_order).clip(0, len(all_ids) - 1)
    pe_row = pe_order[pe_pos]
    unknown = all_ids[pe_row] != pe
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            source, f"unknown purchase_event_id {int(pe[row])}", row=row + 2, column="purchase_event_id"
        )

    item = frame["item_id"].to_numpy()
    item_order = np.argsort(item_ids, kind="stable")
    item_pos = np.searchsorted(item_ids, item, sorter=item_order).clip(0, num_items - 1)
    item_column = item_order[item_pos]
    unknown = item_ids[item_column] != item
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise DataError(
            source,
            f"unknown item_id {int(item[row])} (items are {item_ids.tolist()})",
            row=row + 2,
            column="item_id",
        )

    test_position = np.full(len(all_ids), -1, dtype=np.int64)
    test_position[test_rows] = np.arange(num_test)
    position = test_position[pe_row]  # -1 for training PEs
    scores = frame["score"].to_numpy()
    keep = (position >= 0) & ~np.isnan(scores)

    matrices: ScoreMatrices = {}
    groups = frame.groupby(["model", "seed"], sort=True).indices  # (model, seed) -> row numbers
    for (model, seed), group_rows in groups.items():
        scored = group_rows[~np.isnan(scores[group_rows])]
        flat = (
            pe_row[scored] * num_items + item_column[scored]
        )  # over all PEs: a duplicate anywhere is an error
        counts = np.bincount(flat, minlength=len(all_ids) * num_items)
        if (counts > 1).any():
            cell = int(np.flatnonzero(counts > 1)[0])
            first_two = scored[flat == cell][:2]
            raise DataError(
                source,
                f"duplicate prediction for model {model!r} seed {seed} purchase_event_id "
                f"{int(all_ids[cell // num_items])} item_id {int(item_ids[cell % num_items])} "
                f"(rows {first_two[0] + 2} and {first_two[1] + 2})",
                row=int(first_two[1]) + 2,
            )
        rows = group_rows[keep[group_rows]]
        matrix = np.full((num_test, num_items), np.nan)
        matrix[position[rows], item_column[rows]] = scores[rows]
        check_complete_rows(matrix, data, f"{source}: model {model!r} seed {seed}")
        matrices[(str(model), int(seed))] = matrix
    return matrices


def check_complete_rows(matrix: np.ndarray, data: PreparedData, where: str) -> None:
    """A served PE (any score) must have a score for every item: a half-scored PE cannot be ranked fairly."""
    missing = np.isnan(matrix)
    partial = missing.any(axis=1) & ~missing.all(axis=1)
    if partial.any():
        i = int(np.flatnonzero(partial)[0])
        pe_id = int(np.asarray(data.purchase_event_id)[data.test_indices()[i]])
        lacking = np.asarray(data.item_ids)[missing[i]].tolist()
        raise DataError(
            where,
            f"purchase_event_id {pe_id} has scores for some items but not for item_id(s) {lacking} "
            f"({int(partial.sum())} such PEs); give every item a score, or none to mark the PE as not served",
        )


def load_matrices(paths: Iterable[str | Path], data: PreparedData) -> ScoreMatrices:
    """Read several prediction files; the same (model, seed) in two files is an error naming both."""
    matrices: ScoreMatrices = {}
    origin: dict[tuple[str, int], str] = {}
    for path in paths:
        frame = read_predictions(path)
        for key, matrix in frame_to_matrix(frame, data, source=str(path)).items():
            if key in matrices:
                raise DataError(
                    str(path),
                    f"model {key[0]!r} seed {key[1]} already has predictions in {origin[key]}",
                    column="model",
                )
            matrices[key] = matrix
            origin[key] = str(path)
    return matrices


def matrices_to_frame(
    matrices: ScoreMatrices, data: PreparedData, keys: Sequence[tuple[str, int]] | None = None
):
    """Inverse of ``frame_to_matrix`` (for tests and for re-exporting merged predictions)."""
    test_ids = np.asarray(data.purchase_event_id)[data.test_indices()]
    frames = [
        scores_to_frame(model, seed, test_ids, data.item_ids, matrices[(model, seed)])
        for model, seed in (keys or sorted(matrices))
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(COLUMNS))
