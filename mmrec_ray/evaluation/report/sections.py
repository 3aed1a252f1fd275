"""The report's sections, each built from files the other stages wrote; a missing file is stated in its
place (and listed under "Missing pieces"), never an error."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.evaluation import marks
from mmrec_ray.evaluation.report.document import Report, Section, p_text, read_csv, test_name
from mmrec_ray.evaluation.tables import (
    METRIC_DISPLAY,
    SUBSET_DISPLAY,
    SUBSET_ORDER,
    display_name,
    order_models,
)


def provenance(run_dir: Path, report: Report) -> Section:
    section = Section("Run configuration and provenance", "provenance")
    manifest_path = run_dir / "manifest.json"
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError:
            manifest = None
        if isinstance(manifest, dict):
            facts = []
            for key, value in manifest.items():
                if isinstance(value, (str, int, float, bool)) or value is None:
                    facts.append((key, str(value)))
                elif isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
                    facts.append((key, ", ".join(map(str, value))))
                elif isinstance(value, dict) and all(
                    isinstance(v, (str, int, float, bool)) or v is None for v in value.values()
                ):
                    facts.append((key, "; ".join(f"{k}={v}" for k, v in value.items())))
            if facts:
                section.blocks.append(
                    ("table", pd.DataFrame(facts, columns=["field", "value"]), "From RUN_DIR/manifest.json.")
                )
            section.blocks.append(
                ("code", json.dumps(manifest, indent=2, default=str), "manifest.json (full)")
            )
    else:
        section.blocks.append(("missing", "No manifest.json in the run directory (written by `mmrec run`)."))
        report.missing.append("manifest.json")
    config_path = run_dir / "config.yaml"
    if config_path.exists():
        section.blocks.append(("code", config_path.read_text(), "config.yaml (the resolved configuration)"))
    else:
        section.blocks.append(("missing", "No config.yaml in the run directory (written by `mmrec run`)."))
        report.missing.append("config.yaml")
    return section


def md_file_section(
    report: Report, title: str, anchor: str, path: Path, name: str, why_missing: str
) -> Section:
    """A table as its stage wrote it (Markdown with caption), verbatim: the report shows the very file."""
    section = Section(title, anchor)
    if path.exists():
        section.blocks.append(("md", path.read_text()))
        report.tables.append(name)
    else:
        section.blocks.append(("missing", why_missing))
        report.missing.append(name)
    return section


def image(
    report: Report, section: Section, run_dir: Path, relative: str, caption: str, why_missing: str
) -> None:
    if (run_dir / relative).exists():
        section.blocks.append(("image", relative, caption))
        report.figures.append(relative)
    else:
        section.blocks.append(("missing", why_missing))
        report.missing.append(relative)


def wide_cells(frame: pd.DataFrame, text: Callable[[pd.Series], str]) -> pd.DataFrame:
    """(model rows) x (subset metric columns) of text cells, in Table 3's order; '-' where missing."""
    columns = [(s, m) for s in SUBSET_ORDER for m in ("hr", "map")]
    k = int(frame["k"].iloc[0]) if len(frame) else 3
    records = []
    for model in order_models(frame["model"].unique()):
        record = {"Model": display_name(model)}
        part = frame[frame["model"] == model]
        for subset, metric in columns:
            row = part[(part["subset"] == subset) & (part["metric"] == metric)]
            record[f"{SUBSET_DISPLAY[subset]} {METRIC_DISPLAY[metric]}@{k}"] = (
                text(row.iloc[0]) if len(row) else "-"
            )
        records.append(record)
    return pd.DataFrame(records)


def seed_spread(results: Path, main_k: int, report: Report) -> Section:
    section = Section(f"Mean ± standard deviation over seeds (k = {main_k})", "seeds")
    summary = read_csv(results / "seed_summary.csv")
    if summary is None:
        section.blocks.append(("missing", "results/seed_summary.csv is missing (run `mmrec aggregate`)."))
        report.missing.append("seed_summary")
        return section
    summary = summary[summary["k"] == main_k]
    table = wide_cells(summary, lambda r: f"{r['mean']:.4f} ± {r['std']:.4f}")
    seeds = sorted(summary["n_seeds"].unique())
    section.blocks.append(
        (
            "table",
            table,
            f"Mean ± sample std (ddof = 1) of the per-seed metrics; seeds per model: {', '.join(map(str, seeds))}.",
        )
    )
    report.tables.append("seed_summary")
    return section


def bootstrap(results: Path, report: Report) -> Section:
    section = Section("95 % bootstrap confidence intervals", "bootstrap")
    frame = read_csv(results / "bootstrap_ci.csv")
    if frame is None:
        section.blocks.append(("missing", "results/bootstrap_ci.csv is missing (run `mmrec aggregate`)."))
        report.missing.append("bootstrap_ci")
        return section
    table = wide_cells(frame, lambda r: f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
    confidence = float(frame["confidence"].iloc[0])
    section.blocks.append(
        (
            "table",
            table,
            f"Mean over PEs of the seed consensus (HR: share of seeds that hit; MAP: mean AP) with a "
            f"{confidence:.0%} percentile bootstrap CI (PEs resampled with replacement; {int(frame['n_pes'].max())} "
            f"PEs on the union). Descriptive: no mark anywhere is drawn from these intervals.",
        )
    )
    report.tables.append("bootstrap_ci")
    return section


def reference_tests(results: Path, main_k: int, alpha: float, report: Report) -> Section:
    section = Section("Tests against the reference model", "reference-tests")
    frame = read_csv(results / "significance.csv")
    if frame is None:
        section.blocks.append(
            ("missing", "results/significance.csv is missing or empty (no reference model predictions).")
        )
        report.missing.append("significance")
        return section
    frame = frame[frame["k"] == main_k]
    reference = frame["reference"].iloc[0]
    found = marks.reference_marks(frame, main_k, reference)
    table = wide_cells(
        frame.rename(columns={"value": "mean"}),
        lambda r: (
            f"p = {p_text(r['p_value'])}"
            + marks.symbol(found[(str(r["model"]), str(r["subset"]), str(r["metric"]))].direction)
        ),
    )
    if "alpha" in frame and frame["alpha"].notna().any():
        alpha = float(frame["alpha"].dropna().iloc[0])
    section.blocks.append(
        (
            "table",
            table,
            f"p-values of each model against {display_name(reference)} on the PEs both serve (HR: "
            f"{test_name(frame[frame['metric'] == 'hr'])}; MAP: {test_name(frame[frame['metric'] == 'map'])}); "
            f"{marks.BETTER} / {marks.WORSE} = significantly better / worse at alpha = {alpha:g}, no "
            f"multiple-comparison correction. These are the marks of Table 3 and of the summary.",
        )
    )
    report.tables.append("significance")
    return section


def pairwise(results: Path, main_k: int, alpha: float, report: Report) -> Section:
    section = Section("All pairwise tests with Holm correction", "pairwise")
    frame = read_csv(results / "pairwise_tests.csv")
    if frame is None:
        section.blocks.append(("missing", "results/pairwise_tests.csv is missing (run `mmrec aggregate`)."))
        report.missing.append("pairwise_tests")
        return section
    frame = frame[frame["k"] == main_k]
    counts = []
    for (subset, metric), rows in frame.groupby(["subset", "metric"], sort=False):
        counts.append(
            {
                "Subset": SUBSET_DISPLAY.get(subset, subset),
                "Metric": f"{METRIC_DISPLAY[metric]}@{main_k}",
                "Test": test_name(rows),
                "Pairs": len(rows),
                "Significant after Holm": int(rows["significant"].astype(bool).sum()),
            }
        )
    section.blocks.append(
        (
            "table",
            pd.DataFrame(counts),
            f"Every pair of models that serve the subset, on the same PEs (seed consensus per PE), with the tests "
            f"of Table 3's marks (column Test); Holm's correction over the pairs of each row, alpha = {alpha:g}. "
            f"A different question from Table 3 (every pair, corrected for their number, rather than each model "
            f"against the reference on its own): nothing here marks Table 3 or enters the summary. "
            f"Full list: results/pairwise_tests.csv.",
        )
    )
    significant = frame[frame["significant"].astype(bool)].copy()
    if len(significant):
        better = np.where(
            significant["value_a"] >= significant["value_b"], significant["model_a"], significant["model_b"]
        )
        worse = np.where(
            significant["value_a"] >= significant["value_b"], significant["model_b"], significant["model_a"]
        )
        table = pd.DataFrame(
            {
                "Subset": [SUBSET_DISPLAY.get(s, s) for s in significant["subset"]],
                "Metric": [f"{METRIC_DISPLAY[m]}@{main_k}" for m in significant["metric"]],
                "Better": [display_name(m) for m in better],
                "Worse": [display_name(m) for m in worse],
                "Values": [
                    f"{max(a, b):.4f} vs {min(a, b):.4f}"
                    for a, b in zip(significant["value_a"], significant["value_b"])
                ],
                "p (Holm)": [p_text(p) for p in significant["p_holm"]],
            }
        )
        section.blocks.append(
            ("table", table, "The pairs significant after Holm correction (better model first).")
        )
    else:
        section.blocks.append(("p", "After Holm correction no pair of models differs at this level."))
    report.tables.append("pairwise_tests")
    return section


def friedman(run_dir: Path, report: Report) -> Section:
    section = Section("Friedman test and critical-difference diagram", "friedman")
    frame = read_csv(run_dir / "results" / "friedman.csv")
    panels = []
    if frame is None:
        section.blocks.append(
            ("missing", "results/friedman.csv is missing or empty (fewer than three models?).")
        )
        report.missing.append("friedman")
    else:
        records = []
        for letter, (subset, rows) in zip("abcdefgh", frame.groupby("subset", sort=False)):
            rows = rows.sort_values("average_rank")
            first = rows.iloc[0]
            metric = f"{METRIC_DISPLAY[first['metric']]}@{int(first['k'])}"
            panels.append(f"({letter}) {SUBSET_DISPLAY.get(subset, subset)}")
            records.append(
                {
                    "Subset": SUBSET_DISPLAY.get(subset, subset),
                    "Metric": metric,
                    "Models": len(rows),
                    "PEs": int(first["n_pes"]),
                    "chi2": f"{first['friedman_statistic']:.2f}",
                    "p": p_text(first["friedman_p_value"]),
                    "Nemenyi CD": f"{first['critical_difference']:.3f}",
                    "Average ranks (1 = best)": ", ".join(
                        f"{display_name(m)} {r:.2f}" for m, r in zip(rows["model"], rows["average_rank"])
                    ),
                }
            )
        section.blocks.append(
            (
                "table",
                pd.DataFrame(records),
                "Friedman test with PEs as blocks (all models at once); Nemenyi critical difference. A question "
                "of its own: nothing here marks Table 3 or enters the summary.",
            )
        )
        report.tables.append("friedman")
    image(
        report,
        section,
        run_dir,
        "figures/cd_diagram.png",
        "Critical-difference diagram (Friedman test, Nemenyi post-hoc), one panel per subset"
        + (f" ({', '.join(panels)})" if panels else "")
        + ": average rank per model (1 = best); models joined by a bar are not significantly different; the "
        "red bar is the critical difference (CD).",
        "figures/cd_diagram.png is missing (run `mmrec aggregate`).",
    )
    return section


def ablation(run_dir: Path, report: Report, why_missing: str, alpha: float) -> Section:
    """The ablation table rendered from ablation.csv by the same function as ablation.md, so that its marks
    and the summary's counts come from one criterion even for a CSV written by an older version."""
    from mmrec_ray.evaluation.analyses.ablation import ablation_markdown

    section = Section("Counterfactual modality ablation", "ablation")
    frame = read_csv(run_dir / "analyses" / "ablation" / "ablation.csv")
    if frame is None:
        section.blocks.append(("missing", why_missing))
        report.missing.append("ablation")
        return section
    n_pes = int(frame["n_pes"].max()) if frame["n_pes"].notna().any() else None
    section.blocks.append(("md", ablation_markdown(frame, alpha, n_pes)))
    report.tables.append("ablation")
    if (run_dir / "analyses/ablation/ablation.png").exists():
        image(
            report,
            section,
            run_dir,
            "analyses/ablation/ablation.png",
            "Paired change (hidden − full) of (a) HR and (b) MAP when one modality of the intersection test PEs "
            "is hidden: bar = mean over PEs, whisker = bootstrap CI; faded bars are those whose CI contains zero "
            "(no mark in the table).",
            "",
        )
    return section


def sweep(run_dir: Path, report: Report) -> Section:
    """The hyperparameter sweep (``tune/sweep.json``, written from ``tune/trials.csv``): per model the spread of
    validation loss, hyperparameter importance, the best configurations and a scatter per searched parameter.
    A run that did not tune (``tune.enabled: false``, or no tune stage yet) says so; it is no missing piece."""
    from mmrec_ray.evaluation import sweep as sw

    section = Section("Hyperparameter sweep", "sweep")
    summary = sw.read_sweep(run_dir)
    if summary is None:
        if (run_dir / "tune" / "trials.csv").exists():
            section.blocks.append(
                (
                    "missing",
                    f"tune/sweep.json is missing: run `python -m mmrec_ray.evaluation.sweep {run_dir}` (or the "
                    f"pipeline's aggregate stage).",
                )
            )
            report.missing.append("tune/sweep.json")
        else:
            section.blocks.append(
                ("p", "The tune stage did not run: the models were fitted with their configured parameters.")
            )
        return section
    searched = f"{summary['search']} search, " if summary.get("search") else ""
    section.blocks.append(
        (
            "p",
            f"{summary['n_trials']} trials ({searched}{len(summary['models'])} models); validation loss only "
            f"(the test split is never read while tuning). Full tables: `tune/sweep.md`, `tune/sweep.json`, "
            f"`tune/trials.csv`.",
        )
    )
    section.blocks.append(
        (
            "table",
            sw.overview_frame(summary),
            "Per model: trials, how many reached a validation loss (ASHA may stop a trial before its final "
            "stage), the best, median and worst validation loss and the interquartile range across the space "
            "(how much tuning matters), and the hyperparameter that explains most of the loss variance.",
        )
    )
    importance = sw.importance_frame(summary)
    if not importance.empty:
        section.blocks.append(
            (
                "table",
                importance,
                "Hyperparameter importance: share of the validation-loss variance each searched hyperparameter "
                "explains (fanova: Optuna's fANOVA over the trials; variance: main-effect eta squared); const = "
                "one value in every trial.",
            )
        )
    section.blocks.append(
        (
            "table",
            sw.best_frame(summary, per_model=3),
            "The three best configurations of each model (rank 1 is what the fit stage uses).",
        )
    )
    report.tables.append("sweep")
    for name, part in summary["models"].items():
        relative = part.get("figure")
        if relative:
            image(
                report,
                section,
                run_dir,
                relative,
                f"{display_name(name)}: validation loss of each trial against each searched hyperparameter "
                f"(star: the best trial; list values jittered).",
                f"{relative} is missing (re-run `python -m mmrec_ray.evaluation.sweep {run_dir}`).",
            )
    return section
