"""`mmrec report RUN_DIR`: one document a researcher can publish from — ``RUN_DIR/report.md`` and a
self-contained ``RUN_DIR/report.html`` (figures embedded as base64 PNG, no external files or network).

Contents, in order: an automatically written summary of what is (and is not) significant; the run's config and
provenance (``config.yaml``, ``manifest.json``); Table 3; mean ± std over seeds; 95 % bootstrap CIs; the tests
against the reference model; all pairwise tests with Holm correction; the Friedman test with its
critical-difference diagram; the HR@k / MAP@k curves (Fig. 6); Table 4 (event order); metrics by number of
events (Fig. 7); t-SNE of inputs and outputs (Figs. 8–9); the counterfactual modality ablation.

Everything is read from files the other stages wrote; a piece that is missing (an analysis switched off, a stage
not run yet) is stated in its place, never an error.
"""

from __future__ import annotations

import base64
import html
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mmrec_ray.evaluation.significance import TEST_NAMES, method_of
from mmrec_ray.evaluation.tables import (
    METRIC_DISPLAY,
    SUBSET_DISPLAY,
    SUBSET_ORDER,
    display_name,
    order_models,
)
from mmrec_ray.io import atomic_write_text

# --------------------------------------------------------------------------------------------- document model
# A block is one of: ("p", text) paragraph with **bold** / `code` inline; ("md", markdown) a Markdown table with
# its caption (as written by the table writers); ("table", DataFrame, caption); ("image", relative path, caption);
# ("code", text, summary) preformatted, collapsed in HTML; ("missing", text) a stated gap; ("list", [items]).
Block = tuple


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Report:
    title: str
    run_dir: Path
    sections: list[Section] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # relative paths of every figure included
    tables: list[str] = field(default_factory=list)  # names of every table included


# --------------------------------------------------------------------------------------------- reading helpers
def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    return frame if len(frame) else None


def _config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}


def _switched_off(config: dict, key: str) -> bool:
    analyses = config.get("analyses") or {}
    return analyses.get("enabled") is False or analyses.get(key) is False


def _fmt(value: float, digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def _test_name(rows: pd.DataFrame) -> str:
    """How the captions name the test behind ``rows`` (its ``test`` column as written by aggregate): a claim in
    the report must name the test that produced the numbers, whichever ``hr_test`` / ``map_test`` was used."""
    ids = list(dict.fromkeys(str(t) for t in rows["test"]))
    names = list(dict.fromkeys(TEST_NAMES.get(method_of(t) or "", t) for t in ids))
    return " / ".join(names) if names else "unknown test"


def _names(models) -> str:
    models = [display_name(m) for m in models]
    if not models:
        return "none"
    return models[0] if len(models) == 1 else ", ".join(models[:-1]) + " and " + models[-1]


# --------------------------------------------------------------------------------------------- summary
def _summary(run_dir: Path, main_k: int, alpha: float) -> list[str]:
    """Sentences stating which differences are significant (Holm-corrected pairwise tests, tests against the
    reference model, Friedman, event order, ablation)."""
    results = run_dir / "results"
    out: list[str] = []
    summary = _read_csv(results / "seed_summary.csv")
    pairwise = _read_csv(results / "pairwise_tests.csv")
    if summary is None:
        return ["No results yet: run `mmrec aggregate` (or the pipeline) first."]
    for metric in ("map", "hr"):
        union = summary[
            (summary["subset"] == "union") & (summary["metric"] == metric) & (summary["k"] == main_k)
        ]
        if union.empty:
            continue
        best = union.sort_values("mean", ascending=False).iloc[0]
        name = f"{METRIC_DISPLAY[metric]}@{main_k}"
        sentence = (
            f"On the union of all test PEs, **{display_name(best['model'])}** has the highest {name} "
            f"({best['mean']:.4f} ± {best['std']:.4f} over {int(best['n_seeds'])} seeds)."
        )
        if pairwise is not None:
            rows = pairwise[
                (pairwise["subset"] == "union") & (pairwise["metric"] == metric) & (pairwise["k"] == main_k)
            ]
            rows = rows[(rows["model_a"] == best["model"]) | (rows["model_b"] == best["model"])]
            others = np.where(rows["model_a"] == best["model"], rows["model_b"], rows["model_a"])
            significant = order_models(others[rows["significant"].astype(bool).to_numpy()])
            not_significant = order_models(others[~rows["significant"].astype(bool).to_numpy()])
            test = _test_name(rows)
            holm_text = f"After Holm correction ({test}, alpha = {alpha:g})"
            if len(rows) and not significant:
                sentence += (
                    f" {holm_text} none of its differences is significant (compared with "
                    f"{_names(not_significant)})."
                )
            elif len(rows) and not_significant:
                sentence += (
                    f" {holm_text} it is significantly better than {_names(significant)}; the difference to "
                    f"{_names(not_significant)} is not significant."
                )
            elif len(rows):
                sentence += (
                    f" {holm_text} it is significantly better than every other model that serves the union "
                    f"({_names(significant)})."
                )
        out.append(sentence)
    significance = _read_csv(results / "significance.csv")
    if significance is not None:
        main = significance[significance["k"] == main_k]
        reference = main["reference"].iloc[0] if len(main) else None
        parts = []
        for subset in SUBSET_ORDER:
            rows = main[(main["subset"] == subset) & (main["metric"] == "map")]
            if rows.empty:
                continue
            hits = order_models(rows[rows["significant"].astype(bool)]["model"].tolist())
            listed = f" ({_names(hits)})" if hits else ""
            parts.append(f"{SUBSET_DISPLAY[subset]} {len(hits)} of {len(rows)}{listed}")
        if reference and parts:
            test = _test_name(main[main["metric"] == "map"])
            out.append(
                f"Tests against the reference model {display_name(reference)} ({test}, MAP@{main_k}, "
                f"alpha = {alpha:g}) — models significantly different per subset: " + "; ".join(parts) + "."
            )
    friedman = _read_csv(results / "friedman.csv")
    if friedman is not None:
        for subset, rows in friedman.groupby("subset", sort=False):
            if subset != "union":
                continue
            first = rows.sort_values("average_rank").iloc[0]
            verdict = "differ" if first["friedman_p_value"] < alpha else "do not differ significantly"
            out.append(
                f"Friedman test over {len(rows)} models on the union (MAP@{int(first['k'])} per PE): "
                f"chi2 = {first['friedman_statistic']:.2f}, p = {_p(first['friedman_p_value'])} — the models "
                f"{verdict} as a group; best average rank {display_name(first['model'])} "
                f"({first['average_rank']:.2f}), Nemenyi CD = {first['critical_difference']:.3f}."
            )
    table4 = _read_csv(run_dir / "analyses" / "shuffle" / "table4.csv")
    if table4 is not None:
        shuffled = table4[(table4["order"] == "shuffled") & (table4["metric"] == "map")]
        parts = []
        for model in order_models(shuffled["model"].unique()):
            rows = shuffled[shuffled["model"] == model].set_index("subset")
            if "union" not in rows.index:
                continue
            worst = rows["relative_change_pct"].abs().idxmax()
            star = " (significant)" if bool(rows.loc["union", "significant"]) else " (not significant)"
            parts.append(
                f"{display_name(model)} {rows.loc['union', 'relative_change_pct']:+.2f}% on the union{star}, "
                f"largest absolute change on {SUBSET_DISPLAY.get(worst, worst)} ({rows.loc[worst, 'relative_change_pct']:+.2f}%)"
            )
        if parts:
            out.append(f"Shuffling the event order changes MAP@{main_k}: " + "; ".join(parts) + ".")
    ablation = _read_csv(run_dir / "analyses" / "ablation" / "ablation.csv")
    if ablation is not None:
        rows = ablation[(ablation["metric"] == "map") & ablation["delta"].notna()]
        significant = rows[rows["significant"].astype(bool)]
        if len(rows):
            items = [
                f"{display_name(r.model)} without {r.hidden}s ({r.delta:+.4f})"
                for r in significant.itertuples()
            ]
            out.append(
                f"Modality ablation on intersection PEs: {len(significant)} of {len(rows)} (model, hidden modality) "
                f"pairs change MAP@{main_k} significantly after Holm correction"
                + (": " + "; ".join(items) + "." if items else ".")
            )
    events = _read_csv(run_dir / "analyses" / "num_events" / "metrics.csv")
    if events is not None:
        union = events[(events["subset"] == "union") & (events["metric"] == "map")]
        means = union.groupby(["model", "n_events_kept"])["value"].mean()
        parts = []
        for model in order_models(union["model"].unique()):
            curve = means.loc[model]
            parts.append(
                f"{display_name(model)} {curve.iloc[0]:.4f} with the last event only vs {curve.iloc[-1]:.4f} "
                f"with up to {int(curve.index[-1])}"
            )
        if parts:
            out.append(f"Number of events (union, MAP@{main_k}): " + "; ".join(parts) + ".")
    return out


# --------------------------------------------------------------------------------------------- sections
def _provenance(run_dir: Path, report: Report) -> Section:
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


def _md_file_section(
    report: Report, title: str, anchor: str, path: Path, name: str, why_missing: str
) -> Section:
    section = Section(title, anchor)
    if path.exists():
        section.blocks.append(("md", path.read_text()))
        report.tables.append(name)
    else:
        section.blocks.append(("missing", why_missing))
        report.missing.append(name)
    return section


def _image(
    report: Report, section: Section, run_dir: Path, relative: str, caption: str, why_missing: str
) -> None:
    if (run_dir / relative).exists():
        section.blocks.append(("image", relative, caption))
        report.figures.append(relative)
    else:
        section.blocks.append(("missing", why_missing))
        report.missing.append(relative)


def _seed_spread(results: Path, main_k: int, report: Report) -> Section:
    section = Section(f"Mean ± standard deviation over seeds (k = {main_k})", "seeds")
    summary = _read_csv(results / "seed_summary.csv")
    if summary is None:
        section.blocks.append(("missing", "results/seed_summary.csv is missing (run `mmrec aggregate`)."))
        report.missing.append("seed_summary")
        return section
    summary = summary[summary["k"] == main_k]
    table = _wide_cells(summary, lambda r: f"{r['mean']:.4f} ± {r['std']:.4f}", value_columns=("mean", "std"))
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


def _wide_cells(frame: pd.DataFrame, text, value_columns=()) -> pd.DataFrame:
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


def _bootstrap(results: Path, report: Report) -> Section:
    section = Section("95 % bootstrap confidence intervals", "bootstrap")
    frame = _read_csv(results / "bootstrap_ci.csv")
    if frame is None:
        section.blocks.append(("missing", "results/bootstrap_ci.csv is missing (run `mmrec aggregate`)."))
        report.missing.append("bootstrap_ci")
        return section
    table = _wide_cells(frame, lambda r: f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]")
    confidence = float(frame["confidence"].iloc[0])
    section.blocks.append(
        (
            "table",
            table,
            f"Mean over PEs of the seed consensus (HR: share of seeds that hit; MAP: mean AP) with a "
            f"{confidence:.0%} percentile bootstrap CI (PEs resampled with replacement; {int(frame['n_pes'].max())} "
            f"PEs on the union).",
        )
    )
    report.tables.append("bootstrap_ci")
    return section


def _reference_tests(results: Path, main_k: int, report: Report) -> Section:
    section = Section("Tests against the reference model", "reference-tests")
    frame = _read_csv(results / "significance.csv")
    if frame is None:
        section.blocks.append(
            ("missing", "results/significance.csv is missing or empty (no reference model predictions).")
        )
        report.missing.append("significance")
        return section
    frame = frame[frame["k"] == main_k]
    reference = frame["reference"].iloc[0]
    table = _wide_cells(
        frame.rename(columns={"value": "mean"}),
        lambda r: f"p = {_p(r['p_value'])}" + (" *" if bool(r["significant"]) else ""),
    )
    section.blocks.append(
        (
            "table",
            table,
            f"p-values of each model against {display_name(reference)} on the same PEs (HR: "
            f"{_test_name(frame[frame['metric'] == 'hr'])}; MAP: {_test_name(frame[frame['metric'] == 'map'])}); "
            f"* = significant at alpha = "
            f"{0.05 if 'alpha' not in frame else frame['alpha'].iloc[0]:g}. These are the markers of Table 3.",
        )
    )
    report.tables.append("significance")
    return section


def _pairwise(results: Path, main_k: int, alpha: float, report: Report) -> Section:
    section = Section("All pairwise tests with Holm correction", "pairwise")
    frame = _read_csv(results / "pairwise_tests.csv")
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
                "Test": _test_name(rows),
                "Pairs": len(rows),
                "Significant after Holm": int(rows["significant"].astype(bool).sum()),
            }
        )
    section.blocks.append(
        (
            "table",
            pd.DataFrame(counts),
            f"Every pair of models that serve the subset, on the same PEs (seed consensus per PE), with the tests "
            f"of Table 3's stars (column Test); Holm's correction over the pairs of each row, alpha = {alpha:g}. "
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
                "p (Holm)": [_p(p) for p in significant["p_holm"]],
            }
        )
        section.blocks.append(("table", table, "The significant pairs (better model first)."))
    else:
        section.blocks.append(("p", "No pair of models differs significantly after Holm correction."))
    report.tables.append("pairwise_tests")
    return section


def _friedman(run_dir: Path, report: Report) -> Section:
    section = Section("Friedman test and critical-difference diagram", "friedman")
    frame = _read_csv(run_dir / "results" / "friedman.csv")
    if frame is None:
        section.blocks.append(
            ("missing", "results/friedman.csv is missing or empty (fewer than three models?).")
        )
        report.missing.append("friedman")
    else:
        records = []
        for subset, rows in frame.groupby("subset", sort=False):
            rows = rows.sort_values("average_rank")
            first = rows.iloc[0]
            records.append(
                {
                    "Subset": SUBSET_DISPLAY.get(subset, subset),
                    "Metric": f"{METRIC_DISPLAY[first['metric']]}@{int(first['k'])}",
                    "Models": len(rows),
                    "PEs": int(first["n_pes"]),
                    "chi2": f"{first['friedman_statistic']:.2f}",
                    "p": _p(first["friedman_p_value"]),
                    "Nemenyi CD": f"{first['critical_difference']:.3f}",
                    "Average ranks (1 = best)": ", ".join(
                        f"{display_name(m)} {r:.2f}" for m, r in zip(rows["model"], rows["average_rank"])
                    ),
                }
            )
        section.blocks.append(
            ("table", pd.DataFrame(records), "Friedman test with PEs as blocks; Nemenyi critical difference.")
        )
        report.tables.append("friedman")
    _image(
        report,
        section,
        run_dir,
        "figures/cd_diagram.png",
        "Critical-difference diagram: models joined by a bar are not significantly different (Nemenyi).",
        "figures/cd_diagram.png is missing (run `mmrec aggregate`).",
    )
    return section


def build_report(run_dir: str | Path, main_k: int | None = None, alpha: float | None = None) -> Report:
    run_dir = Path(run_dir)
    config = _config(run_dir)
    evaluation = config.get("evaluation") or {}
    main_k = int(main_k or evaluation.get("main_k") or 3)
    alpha = float(alpha if alpha is not None else evaluation.get("alpha", 0.05))
    name = config.get("name") or run_dir.name
    report = Report(title=f"mmrec_ray report — run “{name}”", run_dir=run_dir)
    results = run_dir / "results"
    analyses = run_dir / "analyses"

    intro = Section("Summary", "summary")
    intro.blocks.append(
        (
            "p",
            f"Run directory `{run_dir}`; report written {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. "
            f"Headline cut-off k = {main_k}, significance level alpha = {alpha:g}. Results are on the test PEs "
            f"only (the latest 10 % by PE id); all selection used validation data.",
        )
    )
    for sentence in _summary(run_dir, main_k, alpha):
        intro.blocks.append(("p", sentence))
    report.sections.append(intro)
    report.sections.append(_provenance(run_dir, report))

    report.sections.append(
        _md_file_section(
            report,
            f"Table 3 — performance (HR@{main_k}, MAP@{main_k})",
            "table3",
            results / "table3.md",
            "table3",
            "results/table3.md is missing: run `mmrec aggregate` (or the pipeline) first.",
        )
    )
    report.sections.append(_seed_spread(results, main_k, report))
    report.sections.append(_bootstrap(results, report))
    report.sections.append(_reference_tests(results, main_k, report))
    report.sections.append(_pairwise(results, main_k, alpha, report))
    report.sections.append(_friedman(run_dir, report))

    curves = Section("Figure 6 — HR@k and MAP@k for k = 1..5", "fig6")
    for metric in ("map", "hr"):
        _image(
            report,
            curves,
            run_dir,
            f"figures/{metric}_at_k.png",
            f"{METRIC_DISPLAY[metric]}@k per subset (mean over seeds, band = ± 1 std).",
            f"figures/{metric}_at_k.png is missing (run `mmrec aggregate`).",
        )
    report.sections.append(curves)

    def analysis_missing(key: str, what: str) -> str:
        if _switched_off(config, key):
            return f"{what}: switched off in the configuration (analyses.{key} = false or analyses.enabled = false)."
        return (
            f"{what}: not run yet — run `mmrec analyze --run {run_dir}` (or the pipeline's analyses stage)."
        )

    report.sections.append(
        _md_file_section(
            report,
            "Table 4 — event order (shuffle study)",
            "table4",
            analyses / "shuffle" / "table4.md",
            "table4",
            analysis_missing("shuffle", "Table 4 (event-order study)"),
        )
    )
    events = Section("Figure 7 — metrics by number of most recent events", "fig7")
    _image(
        report,
        events,
        run_dir,
        "analyses/num_events/map_by_events.png",
        f"MAP@{main_k} when each test PE keeps only its n most recent events (trained models, no retraining).",
        analysis_missing("num_events", "Figure 7 (number of events)"),
    )
    if (run_dir / "analyses/num_events/hr_by_events.png").exists():
        _image(
            report, events, run_dir, "analyses/num_events/hr_by_events.png", f"HR@{main_k}, same setting.", ""
        )
    report.sections.append(events)

    tsne = Section("Figures 8–9 — t-SNE of input representations and of model outputs", "tsne")
    _image(
        report,
        tsne,
        run_dir,
        "analyses/tsne/tsne_inputs.png",
        "Fig. 8: the per-event input of each model's GRU (Keyword: multi-hot; Latent Feature: tanh projections, "
        "eq. 4; Relative Representation: anchor similarities), coloured by modality.",
        analysis_missing("tsne", "Figure 8 (t-SNE of inputs)"),
    )
    _image(
        report,
        tsne,
        run_dir,
        "analyses/tsne/tsne_outputs.png",
        "Fig. 9: each test PE's model output (the GRU's final state), coloured by the PE's type.",
        analysis_missing("tsne", "Figure 9 (t-SNE of outputs)"),
    )
    report.sections.append(tsne)

    ablation = _md_file_section(
        report,
        "Counterfactual modality ablation",
        "ablation",
        analyses / "ablation" / "ablation.md",
        "ablation",
        analysis_missing("ablation", "The modality ablation"),
    )
    if (run_dir / "analyses/ablation/ablation.png").exists():
        _image(
            report,
            ablation,
            run_dir,
            "analyses/ablation/ablation.png",
            "Paired change when one modality of the intersection test PEs is hidden (95 % bootstrap CI).",
            "",
        )
    report.sections.append(ablation)

    gaps = Section("Missing pieces", "missing")
    if report.missing:
        gaps.blocks.append(("list", [f"`{m}`" for m in report.missing]))
    else:
        gaps.blocks.append(("p", "None: every table and figure of the report is present."))
    report.sections.append(gaps)
    return report


# --------------------------------------------------------------------------------------------- Markdown
def _md_table(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join(["---"] * len(frame.columns)) + "|",
    ]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    out = [f"# {report.title}", ""]
    out.append("Contents: " + " · ".join(f"[{s.title}](#{s.anchor})" for s in report.sections))
    out.append("")
    for section in report.sections:
        out += [f'<a id="{section.anchor}"></a>', "", f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            kind = block[0]
            if kind == "p":
                out += [block[1], ""]
            elif kind == "md":
                out += [block[1].rstrip(), ""]
            elif kind == "table":
                out += [_md_table(block[1]), "", f"*{block[2]}*" if block[2] else "", ""]
            elif kind == "image":
                out += [f"![{block[2]}]({block[1]})", "", f"*{block[2]}*", ""]
            elif kind == "code":
                out += [
                    f"<details><summary>{block[2]}</summary>",
                    "",
                    "```",
                    block[1].rstrip(),
                    "```",
                    "",
                    "</details>",
                    "",
                ]
            elif kind == "missing":
                out += [f"> **Not available.** {block[1]}", ""]
            elif kind == "list":
                out += [f"- {item}" for item in block[1]] + [""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------------------------- HTML
_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1280px; margin: 2em auto;
       padding: 0 1.5em; color: #1d1d1f; line-height: 1.5; }
h1 { font-size: 1.7em; border-bottom: 2px solid #333; padding-bottom: .3em; }
h2 { font-size: 1.3em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
nav { font-size: .9em; background: #f5f5f7; padding: .6em 1em; border-radius: 6px; }
nav { display: flex; flex-wrap: wrap; gap: .2em 1.2em; }
nav a { white-space: nowrap; }
table { border-collapse: collapse; margin: .8em 0; font-size: .86em; }
th, td { border: 1px solid #d0d0d5; padding: .3em .6em; text-align: center; }
th { background: #eef0f4; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.scroll { overflow-x: auto; }
figure { margin: 1em 0 2em 0; }
figure img { max-width: 100%; border: 1px solid #e0e0e0; }
figcaption, .caption { font-size: .88em; color: #444; margin-top: .3em; }
.missing { background: #fff4e5; border-left: 4px solid #f0a020; padding: .5em .9em; margin: .8em 0; }
pre { background: #f5f5f7; padding: .8em; overflow-x: auto; font-size: .82em; }
code { background: #f0f0f3; padding: 0 .25em; border-radius: 3px; }
"""


def _inline(text: str) -> str:
    """Escape, then the inline Markdown the writers use: **bold**, `code`, and \\* for a literal asterisk."""
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return text.replace("\\*", "*").replace("\\|", "|")


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip() for c in cells]


def _md_to_html(markdown: str) -> str:
    """The subset of Markdown our table writers emit: pipe tables and paragraphs (captions)."""
    out: list[str] = []
    lines = markdown.strip().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            header = _split_row(block[0])
            body = [_split_row(r) for r in block[2:]]
            rows = ["<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in header) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body]
            out.append('<div class="scroll"><table>' + "".join(rows) + "</table></div>")
            continue
        if line.strip():
            out.append(f'<p class="caption">{_inline(line)}</p>')
        i += 1
    return "\n".join(out)


def _frame_to_html(frame: pd.DataFrame) -> str:
    rows = ["<tr>" + "".join(f"<th>{_inline(str(c))}</th>" for c in frame.columns) + "</tr>"]
    for row in frame.itertuples(index=False):
        rows.append("<tr>" + "".join(f"<td>{_inline(str(v))}</td>" for v in row) + "</tr>")
    return '<div class="scroll"><table>' + "".join(rows) + "</table></div>"


def to_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
        "<nav>"
        + "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in report.sections)
        + "</nav>",
    ]
    for section in report.sections:
        parts.append(
            f'<section id="{section.anchor}"><h{section.level}>{html.escape(section.title)}</h{section.level}>'
        )
        for block in section.blocks:
            kind = block[0]
            if kind == "p":
                parts.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "md":
                parts.append(_md_to_html(block[1]))
            elif kind == "table":
                parts.append(_frame_to_html(block[1]))
                if block[2]:
                    parts.append(f'<p class="caption">{_inline(block[2])}</p>')
            elif kind == "image":
                data = base64.b64encode((report.run_dir / block[1]).read_bytes()).decode("ascii")
                parts.append(
                    f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}" '
                    f'data-source="{html.escape(block[1])}"><figcaption>{_inline(block[2])} '
                    f"<code>{html.escape(block[1])}</code></figcaption></figure>"
                )
            elif kind == "code":
                parts.append(
                    f"<details><summary>{html.escape(block[2])}</summary><pre>{html.escape(block[1])}</pre></details>"
                )
            elif kind == "missing":
                parts.append(f'<div class="missing"><b>Not available.</b> {_inline(block[1])}</div>')
            elif kind == "list":
                parts.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block[1]) + "</ul>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(
    run_dir: str | Path, main_k: int | None = None, alpha: float | None = None, echo=print
) -> tuple[Path, Path]:
    """Write ``RUN_DIR/report.md`` and ``RUN_DIR/report.html``; returns their paths."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        from mmrec_ray.errors import MmrecError

        raise MmrecError(f"{run_dir}: no such run directory")
    report = build_report(run_dir, main_k, alpha)
    md_path = atomic_write_text(run_dir / "report.md", to_markdown(report))
    html_path = atomic_write_text(run_dir / "report.html", to_html(report))
    if echo:
        missing = f"; missing: {', '.join(report.missing)}" if report.missing else ""
        echo(
            f"report: {len(report.tables)} tables, {len(report.figures)} figures -> {html_path} and {md_path.name}"
            + missing
        )
    return md_path, html_path
