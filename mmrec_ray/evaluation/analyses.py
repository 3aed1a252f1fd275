"""The paper's analyses (section 7, Table 4, Figs. 6–9) and a counterfactual modality ablation (issue 5).

Plain Python/PyTorch (no Ray): the Ray stage in ``mmrec_ray.pipeline.analyses`` only fans the retraining of the
shuffle study out over seeds and calls ``fit_shuffled_seed`` from here.

Data transforms (each returns a new ``PreparedData``; the feature tables and every other PE are untouched):

- ``shuffle_events``: the real events of each PE in a random (seeded) order; padding stays at the end, so the
  modality-only views (``modality_rows``) follow the new order. Only the order changes: every PE keeps the same
  multiset of (kind, row) events, the same flags and the same PE-level conversation vector (a mean: order-free).
- ``keep_most_recent``: each selected PE keeps only its last ``n`` events (the most recent ones), left-aligned.
- ``hide_modality``: the selected PEs lose every event of one modality, the rest is left-aligned.

The last two update ``n_events``, ``has_conversation``, ``has_session`` and the PE-level conversation vector
(the sentence-weighted mean of the kept conversations, zero when none is left) so that every model — including
routing models such as Late Fusion — sees a consistent PE. ``subset`` keeps the PE's original type: the
analyses report by the type the user really is, not by what is left after truncation.

Analyses, each writing under ``RUN_DIR/analyses/``:

- (a) shuffle study (paper 7.2, Table 4): ``fit_shuffled_seed`` retrains the joint models on a shuffled copy
  (train and test), ``shuffle_study`` evaluates the shuffled predictions against the unshuffled ones of the
  main run: ``shuffle/table4.{md,csv,tex}``, ``shuffle/metrics.csv``, ``shuffle/predictions/``;
- (b) number of events (7.1, Fig. 7): ``number_of_events`` — the trained checkpoints on test PEs truncated to
  their last n = 1..max events (no retraining): ``num_events/metrics.csv``, ``num_events/map_by_events.png``;
- (c) t-SNE (7.3, Figs. 8–9): ``tsne_inputs`` (per-event input representations of Keyword, Latent Feature and
  Relative Representation, coloured by modality) and ``tsne_outputs`` (the GRU's final state per test PE,
  coloured by PE type): ``tsne/tsne_inputs.png``, ``tsne/tsne_outputs.png`` and the coordinates as CSV;
- (d) HR@k / MAP@k curves (Fig. 6) are drawn by the aggregate stage (``figures/{map,hr}_at_k.png``);
- (e) counterfactual modality ablation: ``modality_ablation`` hides the conversations (or the sessions) of the
  intersection test PEs and reports paired deltas of HR@k / MAP@k with paired tests and Holm correction:
  ``ablation/ablation.{csv,md}``, ``ablation/ablation.png``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmrec_ray.config import ModelParams, TrainingConfig, from_dict
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_PAD,
    EVENT_SESSION,
    SUBSET_INTERSECTION,
    SUBSET_NAMES,
    PreparedData,
    left_align,
)
from mmrec_ray.errors import MmrecError
from mmrec_ray.evaluation.evaluate import UNION, evaluate
from mmrec_ray.evaluation.metrics import per_pe_metrics
from mmrec_ray.evaluation.significance import consensus_per_pe, hr_significance, map_significance
from mmrec_ray.evaluation.statistics import bootstrap_means, holm
from mmrec_ray.evaluation.tables import (
    METRIC_DISPLAY,
    SUBSET_DISPLAY,
    SUBSET_ORDER,
    _latex_escape,
    display_name,
    order_models,
)
from mmrec_ray.io import atomic_write, atomic_write_text
from mmrec_ray.models import registry
from mmrec_ray.models.base import Recommender
from mmrec_ray.models.layers import MaskedGRU
from mmrec_ray.training.runner import (
    checkpoint_path,
    fit_models,
    load_checkpoint,
    predict_test,
    predictions_path,
)

JOINT_MODELS = ("keyword", "latent_feature", "relative_representation")  # the paper's section 7 models
ANALYSES_DIR = "analyses"
MODALITY_KIND = {"conversation": EVENT_CONVERSATION, "session": EVENT_SESSION}


# ============================================================================================ data transforms
def _with_events(
    data: PreparedData, event_kind: np.ndarray, event_row: np.ndarray, changed: np.ndarray, note: str
) -> PreparedData:
    """A copy of ``data`` with new (left-aligned) events; the per-PE fields derived from the events are
    recomputed for the ``changed`` PEs (N,) bool and copied for the others."""
    event_kind = np.ascontiguousarray(event_kind, dtype=np.int8)
    event_row = np.ascontiguousarray(event_row, dtype=np.int32)
    old_kind = np.asarray(data.event_kind)
    is_conversation = event_kind == EVENT_CONVERSATION
    has_conversation = np.asarray(data.has_conversation).copy()
    has_session = np.asarray(data.has_session).copy()
    has_conversation[changed] = is_conversation[changed].any(axis=1)
    has_session[changed] = (event_kind[changed] == EVENT_SESSION).any(axis=1)
    pe_conversation = np.array(data.pe_conversation_embedding, dtype=np.float32, copy=True)
    # Only PEs that lost a conversation need a new PE-level vector; the others keep theirs bit for bit.
    lost = changed & ((old_kind == EVENT_CONVERSATION).sum(axis=1) != is_conversation.sum(axis=1))
    if lost.any():
        embedding = np.asarray(data.conversation_embedding, dtype=np.float64)
        n_sentences = np.asarray(data.conversation_n_sentences, dtype=np.float64)
        rows = np.flatnonzero(lost)
        total = np.zeros((len(rows), embedding.shape[1]))
        weight = np.zeros(len(rows))
        for step in range(event_kind.shape[1]):
            at = is_conversation[rows, step]
            if not at.any():
                continue
            conversation_rows = event_row[rows[at], step]
            # The PE vector is the mean over all sentences: weight each conversation mean by its sentences.
            w = np.maximum(n_sentences[conversation_rows], 1.0)
            total[at] += w[:, None] * embedding[conversation_rows]
            weight[at] += w
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(weight[:, None] > 0, total / np.maximum(weight, 1e-12)[:, None], 0.0)
        pe_conversation[rows] = mean.astype(np.float32)
    meta = dict(data.meta)
    meta["analysis_transform"] = [*meta.get("analysis_transform", []), note]
    return dataclasses.replace(
        data,
        event_kind=event_kind,
        event_row=event_row,
        n_events=(event_kind != EVENT_PAD).sum(axis=1).astype(np.int16),
        has_conversation=has_conversation,
        has_session=has_session,
        pe_conversation_embedding=pe_conversation,
        meta=meta,
    )


def shuffle_events(data: PreparedData, seed: int | Sequence[int]) -> PreparedData:
    """Permute the real events of every PE at random (``numpy.random.default_rng(seed)``).

    event_kind / event_row (N, T): the first n_events steps of each row are permuted together, padding stays at
    the end; nothing else changes (the flags and the PE-level conversation mean do not depend on order).
    """
    kind = np.asarray(data.event_kind)
    row = np.asarray(data.event_row)
    rng = np.random.default_rng(seed)
    keys = rng.random(kind.shape)
    keys[kind == EVENT_PAD] = np.inf  # padding sorts after every real event and keeps its place
    order = np.argsort(keys, axis=1, kind="stable")
    meta = dict(data.meta)
    meta["analysis_transform"] = [*meta.get("analysis_transform", []), f"shuffle_events(seed={seed})"]
    return dataclasses.replace(
        data,
        event_kind=np.ascontiguousarray(np.take_along_axis(kind, order, axis=1)),
        event_row=np.ascontiguousarray(np.take_along_axis(row, order, axis=1)),
        n_events=np.array(data.n_events, copy=True),
        meta=meta,
    )


def keep_most_recent(data: PreparedData, n: int, pe_mask: np.ndarray | None = None) -> PreparedData:
    """Each PE in ``pe_mask`` (N,) bool (default: the test PEs) keeps only its last ``n`` events — the most
    recent ones, since events are in chronological order — moved to the front; the rest becomes padding."""
    if n < 1:
        raise ValueError(f"keep_most_recent: n must be >= 1, got {n}")
    kind = np.asarray(data.event_kind)
    row = np.asarray(data.event_row)
    pe_mask = np.asarray(data.is_test if pe_mask is None else pe_mask, dtype=bool)
    lengths = (kind != EVENT_PAD).sum(axis=1)
    steps = np.arange(kind.shape[1])
    start = np.where(pe_mask, np.maximum(lengths - n, 0), 0)
    kept = np.where(pe_mask, np.minimum(lengths, n), lengths)
    source = np.minimum(start[:, None] + steps[None, :], kind.shape[1] - 1)
    valid = steps[None, :] < kept[:, None]
    new_kind = np.where(valid, np.take_along_axis(kind, source, axis=1), EVENT_PAD)
    new_row = np.where(valid, np.take_along_axis(row, source, axis=1), -1)
    changed = pe_mask & (lengths > n)
    return _with_events(data, new_kind, new_row, changed, f"keep_most_recent(n={n})")


def hide_modality(data: PreparedData, modality: str, pe_mask: np.ndarray) -> PreparedData:
    """Remove every event of ``modality`` ("conversation" | "session") from the PEs in ``pe_mask`` (N,) bool;
    the remaining events keep their order and are left-aligned."""
    if modality not in MODALITY_KIND:
        raise ValueError(f"hide_modality: modality must be one of {list(MODALITY_KIND)}, got {modality!r}")
    kind = np.asarray(data.event_kind)
    row = np.asarray(data.event_row)
    pe_mask = np.asarray(pe_mask, dtype=bool)
    removed = pe_mask[:, None] & (kind == MODALITY_KIND[modality])
    keep = (kind != EVENT_PAD) & ~removed
    new_kind, new_row = left_align(keep, (kind, EVENT_PAD), (row, -1))
    changed = removed.any(axis=1)
    return _with_events(data, new_kind, new_row, changed, f"hide_modality({modality})")


# ============================================================================================ shared helpers
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


# ============================================================================================ (a) shuffle study
def fit_shuffled_seed(
    data: PreparedData,
    names: Sequence[str],
    seed: int,
    params: dict[str, ModelParams] | None,
    training: TrainingConfig,
    shuffle_seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Shuffle the event order of every PE (train and test; one permutation per repetition, seeded by
    (shuffle_seed, seed)), fit ``names`` (with their dependencies) with ``seed`` and return each model's test
    predictions in the long format. What one Ray task of the shuffle study runs."""
    shuffled = shuffle_events(data, [int(shuffle_seed), int(seed)])
    from mmrec_ray.training.loop import resolve_device

    store = FeatureStore(shuffled, device=resolve_device(training))
    fitted = fit_models(shuffled, list(names), [int(seed)], params, training, store=store)
    return {name: predict_test(fitted[(name, int(seed))][0], store) for name in names}


def shuffle_predictions_dir(run_dir: str | Path) -> Path:
    return analyses_dir(run_dir) / "shuffle" / "predictions"


def shuffle_seed_done(run_dir: str | Path, names: Sequence[str], seed: int) -> bool:
    return all(predictions_path(analyses_dir(run_dir) / "shuffle", n, seed).exists() for n in names)


def write_shuffled_predictions(run_dir: str | Path, seed: int, frames: dict[str, pd.DataFrame]) -> None:
    from mmrec_ray.evaluation.predictions import write_predictions

    for name, frame in frames.items():
        write_predictions(predictions_path(analyses_dir(run_dir) / "shuffle", name, seed), frame)


@dataclasses.dataclass
class Table4:
    """Table 4 of the paper: original vs shuffled event order, HR@k / MAP@k on the union and the subsets, the
    relative change of the shuffled run in parentheses, "*" where the paired test finds a difference."""

    k: int
    models: list[str]
    rows: pd.DataFrame  # model, order (original|shuffled), subset, metric, mean, std, n_seeds,
    # relative_change_pct, p_value, significant
    alpha: float = 0.05

    def _cell(self, model: str, order: str, subset: str, metric: str, style: str) -> str:
        hit = self.rows[
            (self.rows["model"] == model)
            & (self.rows["order"] == order)
            & (self.rows["subset"] == subset)
            & (self.rows["metric"] == metric)
        ]
        if hit.empty:
            return "-"
        row = hit.iloc[0]
        text = f"{row['mean']:.4f}"
        if order == "shuffled":
            if bool(row["significant"]):
                text += r"\*" if style == "md" else r"$^{*}$"
            if np.isfinite(row["relative_change_pct"]):
                percent = f"{row['relative_change_pct']:+.2f}%"
                text += f" ({percent})" if style == "md" else f" ({percent.replace('%', chr(92) + '%')})"
        return text

    def caption(self) -> str:
        seeds = sorted(set(self.rows["n_seeds"].astype(int)))
        seed_text = ", ".join(map(str, seeds))
        return (
            f"Study of the event order: mean over {seed_text} seed(s); each shuffled seed is a new random "
            f"permutation of every PE's events in training and test, retrained from scratch. (%) = relative "
            f"change of the shuffled order w.r.t. the original order; * = the paired test (McNemar on HR, "
            f"Wilcoxon signed-rank on AP, per PE over seeds) finds a difference at alpha = {self.alpha:g}."
        )

    def _columns(self) -> list[tuple[str, str]]:
        return [(s, m) for s in SUBSET_ORDER for m in ("hr", "map")]

    def to_markdown(self) -> str:
        header = ["Model", "Event order"] + [
            f"{SUBSET_DISPLAY.get(s, s)} {METRIC_DISPLAY[m]}@{self.k}" for s, m in self._columns()
        ]
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + [":---:"] * 8) + "|"]
        for model in self.models:
            for order in ("original", "shuffled"):
                cells = [self._cell(model, order, s, m, "md") for s, m in self._columns()]
                label = display_name(model) if order == "original" else ""
                lines.append("| " + " | ".join([label, order, *cells]) + " |")
        return "\n".join(lines) + "\n\n" + self.caption() + "\n"

    def to_latex(self) -> str:
        lines = [
            r"\begin{table*}",
            r"\centering",
            rf"\caption{{{self.caption().replace('%', chr(92) + '%')}}}",
            r"\label{tab:event-order}",
            r"\begin{tabular}{ll" + "c" * 8 + "}",
            r"\toprule",
            " & ".join(
                ["Model", ""]
                + [rf"\multicolumn{{2}}{{c}}{{{SUBSET_DISPLAY.get(s, s)}}}" for s in SUBSET_ORDER]
            )
            + r" \\",
            " ".join(rf"\cmidrule(lr){{{3 + 2 * i}-{4 + 2 * i}}}" for i in range(4)),
            " & ".join(["", ""] + [f"{METRIC_DISPLAY[m]}@{self.k}" for _, m in self._columns()]) + r" \\",
            r"\midrule",
        ]
        for model in self.models:
            for order in ("original", "shuffled"):
                cells = [self._cell(model, order, s, m, "tex") for s, m in self._columns()]
                label = _latex_escape(display_name(model)) if order == "original" else ""
                lines.append(" & ".join([label, f"{order} event order", *cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
        return "\n".join(lines) + "\n"


def _paired_tests(
    original: pd.DataFrame, shuffled: pd.DataFrame, k: int
) -> dict[tuple[str, str, str], float]:
    """p-values of shuffled vs original per (model, subset, metric), paired by PE on its seed means: the same tests
    as Table 3's marks (``significance.hr_significance`` / ``map_significance``, default switches)."""
    a = consensus_per_pe(original[original["k"] == k])
    b = consensus_per_pe(shuffled[shuffled["k"] == k])
    merged = a.merge(b, on=["model", "purchase_event_id", "subset", "k"], suffixes=("_original", "_shuffled"))
    out = {}
    for model, rows in merged.groupby("model"):
        for subset in SUBSET_ORDER:
            part = rows if subset == UNION else rows[rows["subset"] == subset]
            if part.empty:
                continue
            out[(model, subset, "hr")] = hr_significance(
                part["hit_rate_shuffled"].to_numpy(), part["hit_rate_original"].to_numpy()
            ).p_value
            out[(model, subset, "map")] = map_significance(
                part["ap_shuffled"].to_numpy(), part["ap_original"].to_numpy()
            ).p_value
    return out


def shuffle_study(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    k: int = 3,
    alpha: float = 0.05,
    data: PreparedData | None = None,
    echo: Callable[[str], None] | None = print,
) -> Table4:
    """Table 4 from the shuffled predictions (``analyses/shuffle/predictions``) and the main run's predictions
    of the same models (``predictions/``); writes ``analyses/shuffle/{table4.md,table4.tex,table4.csv,
    metrics.csv}``."""
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    out_dir = analyses_dir(run_dir) / "shuffle"
    original_files, shuffled_files = [], []
    for name in models:
        shuffled_seeds = sorted(
            int(p.stem.split("__seed")[1])
            for p in shuffle_predictions_dir(run_dir).glob(f"{name}__seed*.parquet")
        )
        for seed in shuffled_seeds:
            original = predictions_path(run_dir, name, seed)
            if original.exists():
                original_files.append(original)
                shuffled_files.append(predictions_path(out_dir, name, seed))
    if not shuffled_files:
        raise MmrecError(
            f"{shuffle_predictions_dir(run_dir)}: no shuffled predictions matching the run's predictions of "
            f"{list(models)}; run the shuffle analysis first"
        )
    original = evaluate(data, original_files, (k,))
    shuffled = evaluate(data, shuffled_files, (k,))
    p_values = _paired_tests(original.per_pe, shuffled.per_pe, k)
    summary = []
    for order, evaluation in (("original", original), ("shuffled", shuffled)):
        grouped = evaluation.metrics.groupby(["model", "subset", "metric"])["value"]
        stats_frame = grouped.agg(mean="mean", std="std", n_seeds="count").reset_index()
        stats_frame["std"] = stats_frame["std"].fillna(0.0)
        stats_frame["order"] = order
        summary.append(stats_frame)
    rows = pd.concat(summary, ignore_index=True)
    base = rows[rows["order"] == "original"].set_index(["model", "subset", "metric"])["mean"]
    keys = list(zip(rows["model"], rows["subset"], rows["metric"]))
    rows["relative_change_pct"] = [
        (m - base[key]) / base[key] * 100.0 if o == "shuffled" and key in base and base[key] > 0 else np.nan
        for key, m, o in zip(keys, rows["mean"], rows["order"])
    ]
    rows["p_value"] = [
        p_values.get(key, np.nan) if o == "shuffled" else np.nan for key, o in zip(keys, rows["order"])
    ]
    rows["significant"] = rows["p_value"] < alpha
    rows["k"] = k
    rows = rows[
        [
            "model",
            "order",
            "subset",
            "metric",
            "k",
            "mean",
            "std",
            "n_seeds",
            "relative_change_pct",
            "p_value",
            "significant",
        ]
    ]
    present = order_models(rows["model"].unique())
    table = Table4(k=k, models=present, rows=rows, alpha=alpha)
    atomic_write_text(out_dir / "table4.md", table.to_markdown())
    atomic_write_text(out_dir / "table4.tex", table.to_latex())
    _write_csv(out_dir / "table4.csv", rows)
    metrics = pd.concat(
        [original.metrics.assign(order="original"), shuffled.metrics.assign(order="shuffled")],
        ignore_index=True,
    )
    _write_csv(out_dir / "metrics.csv", metrics)
    say(f"analyses: Table 4 for {len(present)} model(s) written to {out_dir / 'table4.md'}")
    return table


# ============================================================================================ loading models
def load_fitted(
    run_dir: str | Path, name: str, seed: int, store: FeatureStore, training: TrainingConfig | None = None
) -> Recommender:
    recommender, _ = load_checkpoint(run_dir, name, seed, store, training)
    return recommender


def available_models(run_dir: str | Path, models: Sequence[str]) -> list[str]:
    """Those of ``models`` with at least one checkpoint in the run (in the given order)."""
    return [m for m in models if checkpoint_seeds(run_dir, m)]


# ============================================================================================ (b) number of events
def number_of_events(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    max_events: int = 10,
    k: int = 3,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """MAP@k and HR@k of the trained checkpoints when every test PE keeps only its ``n`` most recent events,
    n = 1..max_events (paper Fig. 7; no retraining). Writes ``analyses/num_events/metrics.csv`` (model, seed,
    n_events_kept, subset, metric, k, value, n_pes, n_truncated) and ``analyses/num_events/map_by_events.png``."""
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    training = training or TrainingConfig(device="cpu")
    models = available_models(run_dir, models)
    if not models:
        raise MmrecError(f"{run_dir / 'checkpoints'}: no checkpoint of {list(models)}; fit them first")
    test = data.test_indices()
    lengths = np.asarray(data.n_events)[test]
    subsets = _subset_names(data, test)
    max_events = min(int(max_events), int(data.max_events))
    base_store = FeatureStore(data, device="cpu")
    loaded = {
        (m, s): load_fitted(run_dir, m, s, base_store, training)
        for m in models
        for s in checkpoint_seeds(run_dir, m)
    }
    rows = []
    for n in range(1, max_events + 1):
        truncated = keep_most_recent(data, n)
        store = FeatureStore(truncated, device="cpu")
        for (model, seed), recommender in loaded.items():
            scores = recommender.predict(store, test)
            served, hits, ap = _score_outcomes(truncated, test, scores, k)
            for subset in SUBSET_ORDER:
                mask = served & (True if subset == UNION else subsets == subset)
                if not mask.any():
                    continue
                n_truncated = int((lengths[mask] > n).sum())
                for metric, values in (("hr", hits), ("map", ap)):
                    rows.append(
                        (
                            model,
                            seed,
                            n,
                            subset,
                            metric,
                            k,
                            float(values[mask].mean()),
                            int(mask.sum()),
                            n_truncated,
                        )
                    )
    columns = ["model", "seed", "n_events_kept", "subset", "metric", "k", "value", "n_pes", "n_truncated"]
    frame = pd.DataFrame(rows, columns=columns)
    out_dir = analyses_dir(run_dir) / "num_events"
    _write_csv(out_dir / "metrics.csv", frame)
    plot_by_number_of_events(frame, out_dir / "map_by_events.png", "map")
    plot_by_number_of_events(frame, out_dir / "hr_by_events.png", "hr")
    say(f"analyses: metrics by number of events (n = 1..{max_events}) written to {out_dir}")
    return frame


def plot_by_number_of_events(frame: pd.DataFrame, path: str | Path, metric: str = "map") -> Path:
    """Fig. 7: metric@k against the number of most recent events kept; one panel per subset, one line per model
    (mean over seeds, band = ± 1 std)."""
    import matplotlib.pyplot as plt

    from mmrec_ray.evaluation.figures import _save, plot_model_curves

    rows = frame[frame["metric"] == metric]
    k = int(rows["k"].iloc[0]) if len(rows) else 3
    summary = rows.groupby(["model", "subset", "n_events_kept"])["value"].agg(["mean", "std"]).reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    subsets = [s for s in SUBSET_ORDER if (summary["subset"] == s).any()]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.4), squeeze=False)
    handles = {}
    for ax, subset in zip(axes.ravel(), subsets):
        part = summary[summary["subset"] == subset]
        plot_model_curves(ax, part, "n_events_kept", handles)
        ax.set_title(SUBSET_DISPLAY.get(subset, subset))
        ax.set_ylabel(f"{METRIC_DISPLAY[metric]}@{k}")
        # Second tick line: the share of the subset's PEs that lose events at this n (flat lines there mean
        # little was cut, not that history does not matter).
        shares = rows[rows["subset"] == subset].groupby("n_events_kept")[["n_truncated", "n_pes"]].first()
        ticks = sorted(part["n_events_kept"].unique())
        ax.set_xticks(ticks)
        ax.set_xticklabels(
            [f"{n}\n{shares.loc[n, 'n_truncated'] / max(shares.loc[n, 'n_pes'], 1):.0%}" for n in ticks]
        )
        ax.set_xlabel("most recent events kept (n) / share of PEs truncated")
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(subsets) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"{METRIC_DISPLAY[metric]}@{k} by number of most recent events kept (test PEs; mean over seeds, band = ± 1 std)"
    )
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(5, len(handles)),
            frameon=False,
        )
        fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    return _save(fig, path)


# ============================================================================================ (c) t-SNE
def _sample_events(data: PreparedData, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_points`` distinct events (kind, row) drawn uniformly (seeded) from the events of every PE."""
    kind = np.asarray(data.event_kind).ravel()
    row = np.asarray(data.event_row).ravel()
    real = kind != EVENT_PAD
    pairs = np.unique(np.stack([kind[real], row[real]], axis=1), axis=0)
    rng = np.random.default_rng(seed)
    if len(pairs) > max_points:
        pairs = pairs[np.sort(rng.choice(len(pairs), max_points, replace=False))]
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


@torch.no_grad()
def input_representation(
    name: str, recommender: Recommender | None, store: FeatureStore, kinds: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """The per-event input of the model's GRU (paper Fig. 8), (R, F) float32:

    - keyword: [is_conversation, multi-hot keywords (conversation) or tags (session)];
    - latent_feature: the fitted model's eq. (4) latent features (``LatentFeatureNetwork.latent``);
    - relative_representation: cosine similarities to the anchors of the event's modality (eqs. 11–12).
    """
    is_conversation = kinds == EVENT_CONVERSATION
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    conv_t = torch.as_tensor(is_conversation)
    if name == "keyword":
        # Keyword's own vocabulary columns and session vectors (the pooled filter may differ from the tag one).
        conversations, sessions = store.keyword_tables
        keywords = conversations[torch.where(conv_t, rows_t, -1)]
        tags = sessions[torch.where(conv_t, -1, rows_t)]
        features = torch.where(conv_t[:, None], keywords, tags)
        return torch.cat([conv_t[:, None].float(), features], dim=1).numpy()
    if recommender is None:
        raise MmrecError(f"{name}: the input representation needs the fitted model")
    if name == "latent_feature":
        conversation = store.conversation_table[torch.where(conv_t, rows_t, -1)]  # zero rows at sessions
        session = store.session_table[torch.where(conv_t, -1, rows_t)]
        return recommender.network.latent(conv_t.float(), conversation, session).numpy()
    if name == "relative_representation":
        conversation_table, session_table = recommender.relative_tables(store)
        conversation = conversation_table[torch.where(conv_t, rows_t, -1)]
        session = session_table[torch.where(conv_t, -1, rows_t)]
        return torch.where(conv_t[:, None], conversation, session).numpy()
    raise MmrecError(f"no input representation for {name!r}; t-SNE inputs cover {list(JOINT_MODELS)}")


@torch.no_grad()
def output_representation(
    recommender: Recommender, store: FeatureStore, indices: np.ndarray
) -> tuple[np.ndarray, str]:
    """Per PE the final hidden state of the model's (first) masked GRU, (n, H), captured with a forward hook
    while the model predicts — or, for a model without a GRU, its predicted scores (n, J). Returns
    (representation, what it is)."""
    network = getattr(recommender, "network", None)
    gru = (
        next((m for m in network.modules() if isinstance(m, MaskedGRU)), None)
        if network is not None
        else None
    )
    if gru is None:
        return np.nan_to_num(recommender.predict(store, indices)), "predicted scores"
    captured: list[torch.Tensor] = []
    handle = gru.register_forward_hook(lambda _m, _i, output: captured.append(output.detach().cpu()))
    try:
        recommender.predict(store, indices)
    finally:
        handle.remove()
    return torch.cat(captured).numpy(), "final GRU state"


def _tsne(features: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 3:
        return np.zeros((n, 2))
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    return TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed
    ).fit_transform(np.asarray(features, dtype=np.float32))


def tsne_inputs(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    max_points: int = 2000,
    seed: int = 0,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Fig. 8: t-SNE of the per-event input representations, coloured by modality. Writes
    ``analyses/tsne/tsne_inputs.{csv,png}`` (model, kind, row, x, y)."""
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    store = FeatureStore(data, device="cpu")
    kinds, rows = _sample_events(data, max_points, seed)
    frames = []
    for name in models:
        if name not in JOINT_MODELS:
            continue
        seeds = checkpoint_seeds(run_dir, name)
        if name != "keyword" and not seeds:
            say(f"analyses: t-SNE inputs: no checkpoint of {name}; skipped")
            continue
        recommender = load_fitted(run_dir, name, seeds[0], store, training) if seeds else None
        features = input_representation(name, recommender, store, kinds, rows)
        xy = _tsne(features, seed)
        frames.append(pd.DataFrame({"model": name, "kind": kinds, "row": rows, "x": xy[:, 0], "y": xy[:, 1]}))
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "kind", "row", "x", "y"])
    )
    out_dir = analyses_dir(run_dir) / "tsne"
    _write_csv(out_dir / "tsne_inputs.csv", frame)
    _plot_tsne(
        frame,
        out_dir / "tsne_inputs.png",
        colour_by="kind",
        labels={EVENT_CONVERSATION: "conversation", EVENT_SESSION: "web session"},
        title=f"t-SNE of the input representation of each event ({len(kinds)} events sampled)",
    )
    say(f"analyses: t-SNE of input representations written to {out_dir}")
    return frame


def tsne_outputs(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    max_points: int = 2000,
    seed: int = 0,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Fig. 9: t-SNE of each test PE's model output (final GRU state), coloured by PE type. Writes
    ``analyses/tsne/tsne_outputs.{csv,png}`` (model, purchase_event_id, subset, representation, x, y)."""
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    store = FeatureStore(data, device="cpu")
    test = data.test_indices()
    rng = np.random.default_rng(seed)
    if len(test) > max_points:
        test = np.sort(rng.choice(test, max_points, replace=False))
    frames = []
    for name in available_models(run_dir, models):
        recommender = load_fitted(run_dir, name, checkpoint_seeds(run_dir, name)[0], store, training)
        features, what = output_representation(recommender, store, test)
        xy = _tsne(features, seed)
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "purchase_event_id": np.asarray(data.purchase_event_id)[test],
                    "subset": _subset_names(data, test),
                    "representation": what,
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                }
            )
        )
    columns = ["model", "purchase_event_id", "subset", "representation", "x", "y"]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    out_dir = analyses_dir(run_dir) / "tsne"
    _write_csv(out_dir / "tsne_outputs.csv", frame)
    _plot_tsne(
        frame,
        out_dir / "tsne_outputs.png",
        colour_by="subset",
        labels={s: SUBSET_DISPLAY[s] for s in SUBSET_NAMES.values()},
        title=f"t-SNE of the model output per test PE ({len(test)} PEs; final GRU state, seed {seed})",
    )
    say(f"analyses: t-SNE of model outputs written to {out_dir}")
    return frame


def _plot_tsne(frame: pd.DataFrame, path: Path, colour_by: str, labels: dict, title: str) -> Path:
    import matplotlib.pyplot as plt

    from mmrec_ray.evaluation.figures import _save

    models = [m for m in JOINT_MODELS if (frame["model"] == m).any()] + sorted(
        set(frame["model"]) - set(JOINT_MODELS)
    )
    fig, axes = plt.subplots(1, max(len(models), 1), figsize=(5.2 * max(len(models), 1), 5.2), squeeze=False)
    colours = dict(zip(labels, ["tab:orange", "tab:blue", "tab:green", "tab:red"]))
    for ax, (letter, model) in zip(axes[0], zip("abcdefgh", models)):
        part = frame[frame["model"] == model]
        for value, label in labels.items():
            points = part[part[colour_by] == value]
            if points.empty:
                continue
            ax.scatter(
                points["x"],
                points["y"],
                s=6,
                alpha=0.6,
                color=colours[value],
                label=f"{label} ({len(points)})",
            )
        ax.set_title(f"({letter}) {display_name(model)}")
        ax.set_xlabel("t-SNE dimension 1")
        ax.set_ylabel("t-SNE dimension 2")
        ax.legend(loc="best", fontsize=8, markerscale=2, frameon=True)
    if not models:
        axes[0, 0].text(0.5, 0.5, "no fitted model to visualise", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, path)


# ============================================================================================ (e) ablation
def modality_ablation(
    run_dir: str | Path,
    models: Sequence[str] | None = None,
    k: int = 3,
    alpha: float = 0.05,
    bootstrap_resamples: int = 2000,
    seed: int = 0,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Counterfactual modality ablation on trained models: for every intersection test PE, hide its
    conversations (or its sessions) at test time and compare with the full PE.

    Per model and hidden modality: HR@k / MAP@k with and without the modality (mean over seeds of the per-PE
    outcomes), the paired delta (ablated − full) with a 95 % bootstrap CI over PEs, and a paired test on the
    seed consensus per PE (McNemar on majority hits, Wilcoxon signed-rank on mean AP), Holm-corrected over all
    rows of one metric. A model that does not serve the ablated PEs (e.g. Conversation without conversations)
    is listed with ``note``. ``models`` None = every reported model with a checkpoint.
    Writes ``analyses/ablation/ablation.{csv,md,png}``.
    """
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    models = available_models(run_dir, models if models is not None else registry.names())
    inter = np.flatnonzero(np.asarray(data.is_test) & (np.asarray(data.subset) == SUBSET_INTERSECTION))
    out_dir = analyses_dir(run_dir) / "ablation"
    columns = [
        "model",
        "hidden",
        "metric",
        "k",
        "n_pes",
        "n_seeds",
        "full",
        "ablated",
        "delta",
        "ci_low",
        "ci_high",
        "test",
        "p_value",
        "p_holm",
        "significant",
        "note",
    ]
    if len(inter) == 0 or not models:
        frame = pd.DataFrame(columns=columns)
        _write_csv(out_dir / "ablation.csv", frame)
        say("analyses: ablation skipped (no intersection test PEs or no fitted model)")
        return frame
    store = FeatureStore(data, device="cpu")
    mask = np.zeros(data.num_pes, dtype=bool)
    mask[inter] = True
    ablated_stores = {m: FeatureStore(hide_modality(data, m, mask), device="cpu") for m in MODALITY_KIND}
    rows = []
    for name in order_models(models):
        seeds = checkpoint_seeds(run_dir, name)
        per_seed = {"full": [], **{m: [] for m in MODALITY_KIND}}
        for s in seeds:
            recommender = load_fitted(run_dir, name, s, store, training)
            per_seed["full"].append(_score_outcomes(data, inter, recommender.predict(store, inter), k))
            for modality, ablated_store in ablated_stores.items():
                scores = recommender.predict(ablated_store, inter)
                per_seed[modality].append(_score_outcomes(ablated_store.data, inter, scores, k))
        full_served = np.all([o[0] for o in per_seed["full"]], axis=0)
        for modality in MODALITY_KIND:
            served = full_served & np.all([o[0] for o in per_seed[modality]], axis=0)
            base = {
                "model": name,
                "hidden": modality,
                "k": k,
                "n_seeds": len(seeds),
                "n_pes": int(served.sum()),
            }
            if not served.any():
                for metric in ("hr", "map"):
                    rows.append(
                        {
                            **base,
                            "metric": metric,
                            "note": f"does not serve intersection PEs without {modality}s",
                        }
                    )
                continue
            hits_full = np.mean([o[1] for o in per_seed["full"]], axis=0)[served]
            hits_ablated = np.mean([o[1] for o in per_seed[modality]], axis=0)[served]
            ap_full = np.mean([o[2] for o in per_seed["full"]], axis=0)[served]
            ap_ablated = np.mean([o[2] for o in per_seed[modality]], axis=0)[served]
            for metric, full, ablated in (("hr", hits_full, hits_ablated), ("map", ap_full, ap_ablated)):
                low, high = bootstrap_means(ablated - full, bootstrap_resamples, 0.95, seed)
                # The tests of Table 3's marks, on the per-PE seed means shown here.
                paired = (hr_significance if metric == "hr" else map_significance)(ablated, full)
                test, p_value = paired.test, paired.p_value
                rows.append(
                    {
                        **base,
                        "metric": metric,
                        "full": float(full.mean()),
                        "ablated": float(ablated.mean()),
                        "delta": float((ablated - full).mean()),
                        "ci_low": float(low),
                        "ci_high": float(high),
                        "test": test,
                        "p_value": float(p_value),
                        "note": "",
                    }
                )
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame["p_holm"] = np.nan
    frame["significant"] = False
    for metric in ("hr", "map"):
        tested = (frame["metric"] == metric) & frame["p_value"].notna()
        if tested.any():
            reject, adjusted = holm(frame.loc[tested, "p_value"].to_numpy(), alpha)
            frame.loc[tested, "p_holm"] = adjusted
            frame.loc[tested, "significant"] = reject
    frame["note"] = frame["note"].fillna("")
    _write_csv(out_dir / "ablation.csv", frame)
    atomic_write_text(out_dir / "ablation.md", ablation_markdown(frame, alpha, len(inter)))
    plot_ablation(frame, out_dir / "ablation.png")
    say(f"analyses: modality ablation on {len(inter)} intersection test PEs written to {out_dir}")
    return frame


def ablation_markdown(frame: pd.DataFrame, alpha: float = 0.05, n_intersection: int | None = None) -> str:
    """The ablation as a Markdown table: one row per (model, hidden modality), HR and MAP full → ablated, Δ."""
    if frame.empty:
        return "No ablation results.\n"
    k = int(frame["k"].iloc[0])
    header = [
        "Model",
        "Hidden",
        f"HR@{k} full",
        f"HR@{k} hidden",
        f"Δ HR@{k} [95% CI]",
        f"MAP@{k} full",
        f"MAP@{k} hidden",
        f"Δ MAP@{k} [95% CI]",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + [":---:"] * 6) + "|"]
    for (model, hidden), part in frame.groupby(["model", "hidden"], sort=False):
        cells = [display_name(model), f"{hidden}s"]
        for metric in ("hr", "map"):
            row = part[part["metric"] == metric]
            if row.empty or pd.isna(row["delta"].iloc[0]):
                note = row["note"].iloc[0] if len(row) else ""
                cells += ["-", "-", note or "-"]
                continue
            r = row.iloc[0]
            star = r"\*" if bool(r["significant"]) else ""
            cells += [
                f"{r['full']:.4f}",
                f"{r['ablated']:.4f}",
                f"{r['delta']:+.4f}{star} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    n_text = f" ({n_intersection} PEs)" if n_intersection is not None else ""
    caption = (
        f"Counterfactual modality ablation on the intersection test PEs{n_text}: the trained models (mean over "
        f"seeds) predict with all events (full) and with the conversations or the sessions hidden. Δ = hidden − "
        f"full with a 95 % bootstrap CI over PEs; * = significant after Holm correction (McNemar on majority hits "
        f"for HR, Wilcoxon signed-rank on mean AP for MAP, alpha = {alpha:g})."
    )
    return "\n".join(lines) + "\n\n" + caption + "\n"


def plot_ablation(frame: pd.DataFrame, path: str | Path) -> Path:
    """Paired deltas (hidden − full) per model with 95 % bootstrap CIs; one panel per metric."""
    import matplotlib.pyplot as plt

    from mmrec_ray.evaluation.figures import _save

    done = frame[frame["delta"].notna()]
    k = int(frame["k"].iloc[0]) if len(frame) else 3
    models = order_models(frame["model"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * max(len(models), 3) + 2.2), squeeze=False)
    offsets = {"conversation": -0.2, "session": 0.2}
    colours = {"conversation": "tab:orange", "session": "tab:blue"}
    for ax, metric in zip(axes[0], ("hr", "map")):
        for hidden in MODALITY_KIND:
            part = done[(done["metric"] == metric) & (done["hidden"] == hidden)].set_index("model")
            ys = [i + offsets[hidden] for i, m in enumerate(models) if m in part.index]
            present = [m for m in models if m in part.index]
            if not present:
                continue
            deltas = part.loc[present, "delta"].to_numpy(dtype=float)
            errors = np.vstack(
                [
                    deltas - part.loc[present, "ci_low"].to_numpy(dtype=float),
                    part.loc[present, "ci_high"].to_numpy(dtype=float) - deltas,
                ]
            )
            ax.barh(ys, deltas, height=0.38, color=colours[hidden], alpha=0.8, label=f"{hidden}s hidden")
            ax.errorbar(
                deltas, ys, xerr=np.maximum(errors, 0), fmt="none", ecolor="black", capsize=3, linewidth=1
            )
        skipped = frame[(frame["metric"] == metric) & frame["delta"].isna()]
        for row in skipped.itertuples():
            if row.model in models:
                y = models.index(row.model) + offsets[row.hidden]
                ax.annotate(
                    f"not served without {row.hidden}s",
                    (0, y),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="dimgray",
                )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels([display_name(m) for m in models])
        ax.invert_yaxis()
        ax.set_xlabel(f"Δ {METRIC_DISPLAY[metric]}@{k} (hidden − full), 95 % bootstrap CI")
        ax.set_title(f"{METRIC_DISPLAY[metric]}@{k} change on intersection test PEs")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(
        "Counterfactual modality ablation: change in each model when one modality is hidden (bar = mean, whisker = 95 % CI)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return _save(fig, path)


__all__ = [
    "JOINT_MODELS",
    "Table4",
    "fit_shuffled_seed",
    "hide_modality",
    "keep_most_recent",
    "modality_ablation",
    "number_of_events",
    "shuffle_events",
    "shuffle_study",
    "tsne_inputs",
    "tsne_outputs",
]
