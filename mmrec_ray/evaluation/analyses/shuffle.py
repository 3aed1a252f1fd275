"""(a) The event-order study (paper 7.2, Table 4): ``fit_shuffled_seed`` retrains the joint models on a shuffled
copy (train and test), ``shuffle_study`` evaluates the shuffled predictions against the unshuffled ones of the
main run: ``shuffle/table4.{md,csv,tex}``, ``shuffle/metrics.csv``, ``shuffle/predictions/``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.errors import MmrecError
from mmrec_ray.evaluation import marks
from mmrec_ray.evaluation.analyses.common import JOINT_MODELS, _say, _write_csv, analyses_dir
from mmrec_ray.evaluation.analyses.transforms import shuffle_events
from mmrec_ray.evaluation.evaluate import UNION, evaluate
from mmrec_ray.evaluation.significance import (
    DEFAULT_HR_TEST,
    DEFAULT_MAP_TEST,
    TEST_NAMES,
    consensus_per_pe,
    hr_significance,
    map_significance,
)
from mmrec_ray.evaluation.tables import (
    METRIC_DISPLAY,
    SUBSET_DISPLAY,
    SUBSET_ORDER,
    _latex_escape,
    display_name,
    order_models,
)
from mmrec_ray.io import atomic_write_text
from mmrec_ray.training.runner import fit_models, predict_test, predictions_path


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
    relative change of the shuffled run in parentheses, ▲ / ▼ where the paired test finds the shuffled order
    better / worse."""

    k: int
    models: list[str]
    rows: pd.DataFrame  # model, order (original|shuffled), subset, metric, mean, std, n_seeds,
    # relative_change_pct, p_value, significant
    alpha: float = 0.05
    hr_test: str = DEFAULT_HR_TEST  # the paired tests behind the marks, named in the caption
    map_test: str = DEFAULT_MAP_TEST

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
            text += marks.mark(self.direction(model, subset, metric), style)
            if np.isfinite(row["relative_change_pct"]):
                percent = f"{row['relative_change_pct']:+.2f}%"
                text += f" ({percent})" if style == "md" else f" ({percent.replace('%', chr(92) + '%')})"
        return text

    def direction(self, model: str, subset: str, metric: str) -> int:
        """+1 / -1 when the shuffled order is significantly better / worse than the original on this cell, else
        0: what both the table's marks and the report's summary show."""
        rows = self.rows[
            (self.rows["model"] == model) & (self.rows["subset"] == subset) & (self.rows["metric"] == metric)
        ].set_index("order")
        if not {"original", "shuffled"} <= set(rows.index) or not bool(rows.loc["shuffled", "significant"]):
            return 0
        return int(np.sign(float(rows.loc["shuffled", "mean"]) - float(rows.loc["original", "mean"])))

    def caption(self) -> str:
        seeds = sorted(set(self.rows["n_seeds"].astype(int)))
        seed_text = ", ".join(map(str, seeds))
        return (
            f"Study of the event order: mean over {seed_text} seed(s); each shuffled seed is a new random "
            f"permutation of every PE's events in training and test, retrained from scratch. (%) = relative "
            f"change of the shuffled order w.r.t. the original order of the same model; {marks.BETTER} / "
            f"{marks.WORSE} = the shuffled order is significantly better / worse than the original (paired by PE "
            f"on the per-PE seed means; HR: {TEST_NAMES[self.hr_test]}; MAP: {TEST_NAMES[self.map_test]}; "
            f"alpha = {self.alpha:g}, no multiple-comparison correction); no mark = no significant difference."
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
            r"% Requires \usepackage{booktabs} and \usepackage{amssymb}.",
            r"\begin{table*}",
            r"\centering",
            rf"\caption{{{marks.to_latex_text(_latex_escape(self.caption()))}}}",
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
    original: pd.DataFrame,
    shuffled: pd.DataFrame,
    k: int,
    hr_test: str = DEFAULT_HR_TEST,
    map_test: str = DEFAULT_MAP_TEST,
) -> dict[tuple[str, str, str], float]:
    """p-values of shuffled vs original per (model, subset, metric), paired by PE on its seed means: the same tests
    as Table 3's marks (``significance.hr_significance`` / ``map_significance``)."""
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
                part["hit_rate_shuffled"].to_numpy(), part["hit_rate_original"].to_numpy(), hr_test
            ).p_value
            out[(model, subset, "map")] = map_significance(
                part["ap_shuffled"].to_numpy(), part["ap_original"].to_numpy(), map_test
            ).p_value
    return out


def shuffle_study(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    k: int = 3,
    alpha: float = 0.05,
    data: PreparedData | None = None,
    echo: Callable[[str], None] | None = print,
    hr_test: str = DEFAULT_HR_TEST,
    map_test: str = DEFAULT_MAP_TEST,
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
    p_values = _paired_tests(original.per_pe, shuffled.per_pe, k, hr_test, map_test)
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
    table = Table4(k=k, models=present, rows=rows, alpha=alpha, hr_test=hr_test, map_test=map_test)
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
