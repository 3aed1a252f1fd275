"""``build_report``: the sections in order, and ``write_report``: the Markdown and HTML files."""

from __future__ import annotations

import time
from pathlib import Path

from mmrec_ray.evaluation.report import sections as S
from mmrec_ray.evaluation.report.document import Report, Section, read_config, switched_off
from mmrec_ray.evaluation.report.html import to_html
from mmrec_ray.evaluation.report.markdown import to_markdown
from mmrec_ray.evaluation.report.summary import summary_blocks
from mmrec_ray.evaluation.tables import METRIC_DISPLAY
from mmrec_ray.io import atomic_write_text


def build_report(run_dir: str | Path, main_k: int | None = None, alpha: float | None = None) -> Report:
    run_dir = Path(run_dir)
    config = read_config(run_dir)
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
    intro.blocks += summary_blocks(run_dir, main_k, alpha)
    report.sections.append(intro)
    report.sections.append(S.provenance(run_dir, report))

    table3 = S.md_file_section(
        report,
        f"Table 3 — performance (HR@{main_k}, MAP@{main_k})",
        "table3",
        results / "table3.md",
        "table3",
        "results/table3.md is missing: run `mmrec aggregate` (or the pipeline) first.",
    )
    if (results / "table3.tex").exists():
        table3.blocks.append(
            ("p", "For a paper: `results/table3.tex` (booktabs, mean ± std over seeds, the same marks).")
        )
    report.sections.append(table3)
    report.sections.append(S.seed_spread(results, main_k, report))
    report.sections.append(S.bootstrap(results, report))
    report.sections.append(S.reference_tests(results, main_k, alpha, report))
    report.sections.append(S.pairwise(results, main_k, alpha, report))
    report.sections.append(S.friedman(run_dir, report))

    curves = Section("Figure 6 — HR@k and MAP@k for k = 1..5", "fig6")
    for metric in ("map", "hr"):
        S.image(
            report,
            curves,
            run_dir,
            f"figures/{metric}_at_k.png",
            f"{METRIC_DISPLAY[metric]}@k on the test PEs for cut-offs k = 1..5, one panel per subset ((a) Union, "
            f"(b) Conversations-only, (c) Web sessions-only, (d) Intersection), one line per model: mean over "
            f"seeds ± 1 std (a band for up to four models, error bars beyond).",
            f"figures/{metric}_at_k.png is missing (run `mmrec aggregate`).",
        )
    report.sections.append(curves)

    def analysis_missing(key: str, what: str) -> str:
        if switched_off(config, key):
            return f"{what}: switched off in the configuration (analyses.{key} = false or analyses.enabled = false)."
        return f"{what}: not run yet — run `mmrec analyze --run-dir {run_dir}` (or the pipeline's analyses stage)."

    report.sections.append(
        S.md_file_section(
            report,
            "Table 4 — event order (shuffle study)",
            "table4",
            analyses / "shuffle" / "table4.md",
            "table4",
            analysis_missing("shuffle", "Table 4 (event-order study)"),
        )
    )
    events = Section("Figure 7 — metrics by number of most recent events", "fig7")
    S.image(
        report,
        events,
        run_dir,
        "analyses/num_events/map_by_events.png",
        f"MAP@{main_k} when each test PE keeps only its n most recent events (trained models, no retraining), one "
        f"panel per subset, mean over seeds ± 1 std; the second tick line is the share of the subset's PEs that "
        f"lose events at that n.",
        analysis_missing("num_events", "Figure 7 (number of events)"),
    )
    if (run_dir / "analyses/num_events/hr_by_events.png").exists():
        S.image(
            report, events, run_dir, "analyses/num_events/hr_by_events.png", f"HR@{main_k}, same setting.", ""
        )
    report.sections.append(events)

    tsne = Section("Figures 8–9 — t-SNE of input representations and of model outputs", "tsne")
    S.image(
        report,
        tsne,
        run_dir,
        "analyses/tsne/tsne_inputs.png",
        "Fig. 8: t-SNE of the per-event input of each model's GRU, one panel per model (Keyword: multi-hot; "
        "Latent Feature: tanh projections, eq. 4; Relative Representation: anchor similarities), coloured by "
        "modality (legend: events sampled per modality).",
        analysis_missing("tsne", "Figure 8 (t-SNE of inputs)"),
    )
    S.image(
        report,
        tsne,
        run_dir,
        "analyses/tsne/tsne_outputs.png",
        "Fig. 9: t-SNE of each test PE's model output (the GRU's final state, first seed), one panel per model, "
        "coloured by the PE's type (legend: PEs per type).",
        analysis_missing("tsne", "Figure 9 (t-SNE of outputs)"),
    )
    report.sections.append(tsne)
    report.sections.append(
        S.ablation(run_dir, report, analysis_missing("ablation", "The modality ablation"), alpha)
    )

    report.sections.append(S.sweep(run_dir, report))

    gaps = Section("Missing pieces", "missing")
    if report.missing:
        gaps.blocks.append(("list", [f"`{m}`" for m in report.missing]))
    else:
        gaps.blocks.append(("p", "None: every table and figure of the report is present."))
    report.sections.append(gaps)
    return report


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
