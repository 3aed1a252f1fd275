"""The report's summary: what is (and is not) significant, in sentences a reader can check against the tables.

One source of truth per claim. The Table 3 claims are ``marks.reference_marks`` of ``results/significance.csv``
— the rows Table 3's ▲ / ▼ were drawn from — listed per column as "significantly better / worse / no significant
difference", so every sentence has its cell and every marked cell its sentence. The event-order claims are
``Table4.direction`` of ``table4.csv`` (Table 4's marks); the ablation counts are ``with_ci_marks`` of
``ablation.csv`` (its table's marks). Tests that mark nothing (all pairs with Holm correction, Friedman) answer
other questions and are left to their own sections, where they are labelled as such: quoting them here is how
the summary used to call a difference significant that Table 3 did not mark. The one exception is the opening
headline, which says so: it answers "does the table show the paper's result, and how sure is it?" with the
all-pairs tests (Holm-corrected: the stricter family), never with Table 3's uncorrected marks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.evaluation import marks
from mmrec_ray.evaluation.report.document import Block, names, read_config, read_csv, test_name
from mmrec_ray.evaluation.tables import (
    METRIC_DISPLAY,
    PROPOSED,
    SUBSET_DISPLAY,
    SUBSET_ORDER,
    column_name,
    display_name,
    order_models,
)

BASELINE = "popular"  # the floor every learned model has to clear
FUSION_BASELINE = "late_fusion"  # the baseline the paper's joint models are proposed against


def _pair(pairwise: pd.DataFrame, subset: str, a: str, b: str) -> tuple[float, float, float] | None:
    """(value of a, value of b, uncorrected p) on one subset, from the all-pairs tests; None if not tested."""
    rows = pairwise[pairwise["subset"] == subset]
    for first, second, flip in ((a, b, False), (b, a, True)):
        hit = rows[(rows["model_a"] == first) & (rows["model_b"] == second)]
        if len(hit):
            r = hit.iloc[0]
            values = (
                (float(r["value_b"]), float(r["value_a"]))
                if flip
                else (float(r["value_a"]), float(r["value_b"]))
            )
            return values[0], values[1], float(r["p_value"])
    return None


def _holm(pairs: dict, alpha: float) -> dict:
    """key -> (value, other value, significant): Holm's correction over this family of comparisons only."""
    from mmrec_ray.evaluation.statistics import holm

    keys = [k for k, v in pairs.items() if v is not None and np.isfinite(v[2])]
    if not keys:
        return {}
    reject, _ = holm([pairs[k][2] for k in keys], alpha)
    return {k: (pairs[k][0], pairs[k][1], bool(r)) for k, r in zip(keys, reject)}


def headline(results: Path, main_k: int, alpha: float) -> list[Block]:
    """One sentence: does every learned model clear Popular, which model is best and how sure, and do the paper's
    joint models beat Late Fusion. Each claim is one family of the all-pairs HR tests' uncorrected p-values
    (Popular vs each learned model; the best vs each other model; each joint model vs Late Fusion), Holm-corrected
    within that family: the question asked, not all 66 pairs at once, which would hide real differences."""
    pairwise, boot = read_csv(results / "pairwise_tests.csv"), read_csv(results / "bootstrap_ci.csv")
    if pairwise is None or boot is None:
        return []
    pairwise = pairwise[(pairwise["metric"] == "hr") & (pairwise["k"] == main_k)]
    boot = boot[(boot["metric"] == "hr") & (boot["k"] == main_k)]
    union = boot[boot["subset"] == "union"].sort_values("mean", ascending=False)
    if pairwise.empty or union.empty:
        return []
    metric = f"{METRIC_DISPLAY['hr']}@{main_k}"
    on_union = set(union["model"])
    parts = []
    learned = order_models([m for m in on_union if m != BASELINE])
    if BASELINE in on_union and learned:
        tested = _holm({m: _pair(pairwise, "union", m, BASELINE) for m in learned}, alpha)
        beat = [m for m in learned if m in tested and tested[m][2] and tested[m][0] > tested[m][1]]
        per_subset = []
        for subset in [s for s in SUBSET_ORDER if s != "union"]:
            served = boot[(boot["subset"] == subset) & (boot["model"] != BASELINE)]["model"]
            cells = _holm({m: _pair(pairwise, subset, m, BASELINE) for m in served}, alpha)
            if cells:
                above = sum(significant and mine > theirs for mine, theirs, significant in cells.values())
                per_subset.append(f"{SUBSET_DISPLAY.get(subset, subset).lower()} {above} of {len(cells)}")
        who = (
            "every learned model beats"
            if len(beat) == len(learned)
            else f"{len(beat)} of {len(learned)} learned models beat"
        )
        missing = [m for m in learned if m not in beat]
        parts.append(
            f"{who} {display_name(BASELINE)} on the union of {int(union['n_pes'].max())} test PEs"
            + (f" (not: {names(missing)})" if missing else "")
            + (f" (by subset: {', '.join(per_subset)})" if per_subset else "")
        )
    tied = order_models(
        union[union["mean"] >= union["mean"].iloc[0] - 1e-9]["model"]
    )  # paper order breaks ties
    best = union[union["model"] == tied[0]].iloc[0]
    rest = [m for m in union["model"] if m != best["model"]]
    others = _holm({m: _pair(pairwise, "union", m, best["model"]) for m in rest}, alpha)
    level = order_models(
        [m for m, (_, _, significant) in others.items() if not significant and m not in tied]
    )
    confidence = float(best["confidence"]) if "confidence" in best else 0.95
    parts.append(
        f"the best on the union is **{display_name(best['model'])}** ({metric} {best['mean']:.3f}, "
        f"{confidence:.0%} CI [{best['ci_low']:.3f}, {best['ci_high']:.3f}])"
        + (f", tied with {names(tied[1:])}" if len(tied) > 1 else "")
        + (f", level with {names(level)}" if level else "")
        + (", significantly ahead of every other model" if not level and len(tied) == 1 else "")
    )
    joint = [m for m in PROPOSED if m in on_union]
    if FUSION_BASELINE in on_union and joint:
        tested = _holm({m: _pair(pairwise, "union", m, FUSION_BASELINE) for m in joint}, alpha)
        versus = [
            f"{display_name(m)} {mine - theirs:+.3f} ({'significant' if significant else 'not significant'})"
            for m, (mine, theirs, significant) in tested.items()
        ]
        if versus:
            parts.append(
                f"against {display_name(FUSION_BASELINE)} the paper's joint models gain " + ", ".join(versus)
            )
    sentence = "; ".join(parts)
    return [
        (
            "p",
            f"**In one sentence:** {sentence[0].upper() + sentence[1:]}. ({metric}, means over seeds; each claim "
            f"is a paired test of the all-pairs section with Holm's correction within its own family of "
            f"comparisons, alpha = {alpha:g}.)",
        )
    ]


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
    blocks = headline(results, main_k, alpha) + _best_models(summary, main_k)
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
