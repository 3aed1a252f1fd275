"""The report's summary: what is (and is not) significant, in sentences a reader can check against the tables.

One source of truth per claim. The Table 3 claims are ``marks.reference_marks`` of ``results/significance.csv``
— the rows Table 3's ▲ / ▼ were drawn from — listed per column as "significantly better / worse / no significant
difference", so every sentence has its cell and every marked cell its sentence. The event-order claims are
``Table4.direction`` of ``table4.csv`` (Table 4's marks); the ablation counts are ``with_ci_marks`` of
``ablation.csv`` (its table's marks). Tests that mark nothing (all pairs with Holm correction, Friedman) answer
other questions and are left to their own sections, where they are labelled as such: quoting them here is how
the summary used to call a difference significant that Table 3 did not mark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.evaluation import marks
from mmrec_ray.evaluation.report.document import Block, names, read_config, read_csv, test_name
from mmrec_ray.evaluation.tables import (
    METRIC_DISPLAY,
    SUBSET_ORDER,
    column_name,
    display_name,
    order_models,
)


def _best_models(summary: pd.DataFrame, main_k: int) -> list[Block]:
    out = []
    for metric in ("map", "hr"):
        union = summary[
            (summary["subset"] == "union") & (summary["metric"] == metric) & (summary["k"] == main_k)
        ]
        if union.empty:
            continue
        best = union.sort_values("mean", ascending=False).iloc[0]
        out.append(
            (
                "p",
                f"On the union of all test PEs, **{display_name(best['model'])}** has the highest "
                f"{METRIC_DISPLAY[metric]}@{main_k} ({best['mean']:.4f} ± {best['std']:.4f} over "
                f"{int(best['n_seeds'])} seeds).",
            )
        )
    return out


def reference_claims(results: Path, main_k: int, alpha: float, reference: str | None = None) -> list[Block]:
    """Per Table 3 column: which models are significantly better / worse than the reference, which are not.
    ``reference``: the configured reference model, named when it left no marks."""
    significance = read_csv(results / "significance.csv")
    if significance is None or not (significance["k"] == main_k).any():
        which = f"the reference model {display_name(reference)}" if reference else "the reference model"
        return [
            (
                "p",
                f"Table 3 carries no significance marks: results/significance.csv has no rows ({which} has no "
                f"predictions in this run, or `mmrec aggregate` has not run).",
            )
        ]
    main = significance[significance["k"] == main_k]
    reference = str(main["reference"].iloc[0])
    summary = read_csv(results / "seed_summary.csv")
    means = None
    if summary is not None:
        at_k = summary[summary["k"] == main_k]
        means = {
            (str(m), str(s), str(t)): float(v)
            for m, s, t, v in at_k[["model", "subset", "metric", "mean"]].values
        }
    found = marks.reference_marks(main, main_k, reference, means)
    if "alpha" in main and main["alpha"].notna().any():
        alpha = float(main["alpha"].dropna().iloc[0])  # the level the marks were drawn at
    hr_rows, map_rows = main[main["metric"] == "hr"], main[main["metric"] == "map"]
    intro = (
        f"Against the reference model **{display_name(reference)}** — exactly the {marks.BETTER} / {marks.WORSE} "
        f"marks of Table 3 (HR: {test_name(hr_rows)}; MAP: {test_name(map_rows)}; alpha = {alpha:g}; each model "
        f"tested on its own on the PEs it shares with the reference, no multiple-comparison correction):"
    )
    items = []
    for subset in SUBSET_ORDER:
        for metric in ("hr", "map"):
            column = {m: mark for (m, s, t), mark in found.items() if s == subset and t == metric}
            if not column:
                continue
            ordered = order_models(column)
            better = [m for m in ordered if column[m].direction > 0]
            worse = [m for m in ordered if column[m].direction < 0]
            neither = [m for m in ordered if column[m].direction == 0]
            parts = []
            if better:
                parts.append(f"{marks.BETTER} significantly better: {names(better)}")
            if worse:
                parts.append(f"{marks.WORSE} significantly worse: {names(worse)}")
            if neither:
                parts.append(f"no significant difference: {names(neither)}")
            items.append(
                f"**{column_name(subset, metric, main_k)}** vs {display_name(reference)}: "
                + "; ".join(parts)
                + "."
            )
    return [("p", intro), ("list", items)]


def shuffle_claims(run_dir: Path, main_k: int) -> list[Block]:
    rows = read_csv(run_dir / "analyses" / "shuffle" / "table4.csv")
    if rows is None:
        return []
    from mmrec_ray.evaluation.analyses.shuffle import Table4

    k = int(rows["k"].iloc[0]) if "k" in rows else main_k
    table = Table4(k=k, models=order_models(rows["model"].unique()), rows=rows)
    parts = []
    for model in table.models:
        shuffled = rows[
            (rows["model"] == model)
            & (rows["order"] == "shuffled")
            & (rows["subset"] == "union")
            & (rows["metric"] == "map")
        ]
        if shuffled.empty:
            continue
        change = float(shuffled["relative_change_pct"].iloc[0])
        direction = table.direction(model, "union", "map")
        change_text = f"{change:+.2f} %" if np.isfinite(change) else "n/a"
        verdict = {
            1: f"{marks.BETTER} significantly better",
            -1: f"{marks.WORSE} significantly worse",
        }.get(direction, "no significant difference")
        parts.append(f"{display_name(model)} {change_text}, {verdict}")
    if not parts:
        return []
    return [
        (
            "p",
            f"Shuffling the event order (Table 4: union MAP@{k} of the shuffled vs the original order, with "
            f"Table 4's marks): " + "; ".join(parts) + ".",
        )
    ]


def ablation_claims(run_dir: Path, main_k: int) -> list[Block]:
    frame = read_csv(run_dir / "analyses" / "ablation" / "ablation.csv")
    if frame is None:
        return []
    from mmrec_ray.evaluation.analyses.ablation import with_ci_marks

    frame = with_ci_marks(frame)
    done = frame[frame["delta"].notna()]
    if done.empty:
        return []
    level = (
        float(done["confidence"].dropna().iloc[0])
        if "confidence" in done and done["confidence"].notna().any()
        else 0.95
    )
    k = int(done["k"].iloc[0])
    parts = []
    for metric in ("map", "hr"):
        rows = done[done["metric"] == metric]
        if rows.empty:
            continue
        text = f"for {METRIC_DISPLAY[metric]}@{k}, {int((rows['direction'] != 0).sum())} of {len(rows)} pairs"
        moved = []
        for sign, symbol, word in ((1, marks.BETTER, "up"), (-1, marks.WORSE, "down")):
            hit = rows[rows["direction"] == sign]
            if len(hit):
                moved.append(
                    f"{symbol} {word}: "
                    + ", ".join(
                        f"{display_name(r.model)} without {r.hidden}s ({r.delta:+.4f})"
                        for r in hit.itertuples()
                    )
                )
        parts.append(text + (f" ({'; '.join(moved)})" if moved else ""))
    n_pes = int(done["n_pes"].max())
    return [
        (
            "p",
            f"Modality ablation on {n_pes} intersection test PEs, (model, hidden modality) pairs whose "
            f"{level:.0%} bootstrap CI of the change excludes zero (the marks of its table; no multiple-comparison "
            f"correction): " + "; ".join(parts) + ".",
        )
    ]


def number_of_events_sentence(run_dir: Path, main_k: int) -> list[Block]:
    events = read_csv(run_dir / "analyses" / "num_events" / "metrics.csv")
    if events is None:
        return []
    union = events[(events["subset"] == "union") & (events["metric"] == "map")]
    means = union.groupby(["model", "n_events_kept"])["value"].mean()
    parts = []
    for model in order_models(union["model"].unique()):
        curve = means.loc[model]
        parts.append(
            f"{display_name(model)} {curve.iloc[0]:.4f} with the last event only vs {curve.iloc[-1]:.4f} "
            f"with up to {int(curve.index[-1])}"
        )
    if not parts:
        return []
    return [("p", f"Number of events (union, MAP@{main_k}, no test): " + "; ".join(parts) + ".")]


def summary_blocks(run_dir: Path, main_k: int, alpha: float) -> list[Block]:
    """The summary's paragraphs and lists (module docstring: where each claim comes from)."""
    results = run_dir / "results"
    summary = read_csv(results / "seed_summary.csv")
    if summary is None:
        return [("p", "No results yet: run `mmrec aggregate` (or the pipeline) first.")]
    blocks = _best_models(summary, main_k)
    reference = (read_config(run_dir).get("evaluation") or {}).get("reference_model")
    blocks += reference_claims(results, main_k, alpha, reference)
    blocks.append(
        (
            "p",
            "The all-pairs tests with Holm correction and the Friedman test further down answer other questions "
            "(every pair of models; all models at once) and mark nothing in Table 3.",
        )
    )
    blocks += shuffle_claims(run_dir, main_k)
    blocks += ablation_claims(run_dir, main_k)
    blocks += number_of_events_sentence(run_dir, main_k)
    return blocks
