"""The aggregate stage (SPEC 7, issues 4 and 5): plain Python, no cluster needed.

Reads ``RUN_DIR/prepared/tensors`` and every ``RUN_DIR/predictions/**/*.parquet`` (plus extra prediction files
made elsewhere, in the same long form), then writes

- ``RUN_DIR/results/``: ``metrics.csv``, ``per_pe.parquet`` (evaluate), ``significance.csv`` (``hr_test`` /
  ``map_test`` vs the reference model, every k), ``table3.md``, ``table3.tex``, ``table3.csv``,
  ``seed_summary.csv`` (mean ± std over seeds, every k), ``bootstrap_ci.csv`` (95 % CIs), ``pairwise_tests.csv`` (all pairs, Holm) and
  ``friedman.csv`` (average ranks, Friedman test, Nemenyi CD) at the main cut-off;
- ``RUN_DIR/figures/``: ``map_at_k``, ``hr_at_k`` (paper Fig. 6) and ``cd_diagram``, each as PNG, PDF and SVG.

Every file is written atomically; re-running recomputes everything from the predictions (cheap) and
overwrites, so the outputs always match the predictions present.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mmrec_ray.errors import MmrecError
from mmrec_ray.evaluation.evaluate import Evaluation, evaluate_matrices, load_prepared
from mmrec_ray.evaluation.metrics import DEFAULT_KS
from mmrec_ray.evaluation.predictions import find_prediction_files, load_matrices
from mmrec_ray.evaluation.significance import (
    DEFAULT_HR_TEST,
    DEFAULT_MAP_TEST,
    SIGNIFICANCE_COLUMNS,
    check_methods,
    consensus_per_pe,
    significance_against_reference,
)
from mmrec_ray.evaluation.statistics import (
    bootstrap_table,
    friedman_all,
    pairwise_tests,
    seed_summary,
)
from mmrec_ray.evaluation.tables import SUBSET_ORDER, Table3, build_table3, order_models
from mmrec_ray.io import atomic_write, atomic_write_text


@dataclass
class AggregateResult:
    table: Table3
    evaluation: Evaluation
    significance: pd.DataFrame
    paths: dict[str, Path] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)


def _in_table_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in Table 3's order: subset, model (paper order), metric, k."""
    if frame.empty:
        return frame
    model_rank = {m: i for i, m in enumerate(order_models(frame["model"].unique()))}
    subset_rank = {s: i for i, s in enumerate(SUBSET_ORDER)}
    keys = pd.DataFrame(
        {
            "subset": frame["subset"].map(subset_rank),
            "model": frame["model"].map(model_rank),
            "metric": frame["metric"],
            "k": frame["k"],
        }
    )
    return frame.loc[keys.sort_values(["subset", "model", "metric", "k"], kind="stable").index].reset_index(
        drop=True
    )


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return atomic_write(path, lambda p: frame.to_csv(p, index=False, float_format="%.10g"))


def aggregate(
    run_dir: str | Path,
    extra_predictions: Iterable[str | Path] = (),
    reference: str = "latent_feature",
    ks: Sequence[int] = DEFAULT_KS,
    main_k: int = 3,
    alpha: float = 0.05,
    strongest_baseline: str | None = None,
    bootstrap_resamples: int = 2000,
    seed: int = 0,
    echo: Callable[[str], None] | None = print,
    show_table: bool = True,
    hr_test: str = DEFAULT_HR_TEST,
    map_test: str = DEFAULT_MAP_TEST,
) -> AggregateResult:
    """Evaluate every prediction file of a run, test, tabulate and plot. Returns the table and written paths.

    ``echo`` receives progress lines and, at the end, Table 3 in Markdown unless ``show_table`` is false
    (None = silent). ``hr_test`` / ``map_test`` (EvaluationConfig) choose the tests of the stars and of the
    pairwise tests (``significance`` module docstring).
    """
    check_methods(hr_test, map_test)
    say = echo or (lambda _line: None)
    ks = tuple(sorted({int(k) for k in ks} | {int(main_k)}))
    run_dir = Path(run_dir)
    data = load_prepared(run_dir)
    files = find_prediction_files(run_dir / "predictions") + [Path(p) for p in extra_predictions]
    if not files:
        raise MmrecError(
            f"{run_dir / 'predictions'}: no prediction files (*.parquet); run `mmrec fit` first "
            f"or pass --predictions FILE"
        )
    matrices = load_matrices(files, data)
    say(
        f"aggregate: {len(files)} prediction file(s), {len(matrices)} (model, seed) runs, {data.test_indices().size} test PEs"
    )
    evaluation = evaluate_matrices(matrices, data, ks)
    results, figures = run_dir / "results", run_dir / "figures"
    paths = {f"results/{p.name}": p for p in evaluation.write(results).values()}
    messages: list[str] = []

    n_test = int(data.test_indices().size)
    models = set(evaluation.per_pe["model"].unique())
    if reference in models:
        significance = significance_against_reference(
            evaluation.per_pe, reference, ks, alpha, n_test=n_test, hr_test=hr_test, map_test=map_test
        )
        significance = _in_table_order(significance)
        # The level the ``significant`` column was drawn at, so that the report states the marks' own alpha.
        significance["alpha"] = alpha
    else:
        messages.append(
            f"reference model {reference!r} has no predictions (models: {sorted(models)}): "
            f"Table 3 carries no significance markers"
        )
        significance = pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)
    paths["results/significance.csv"] = _write_csv(results / "significance.csv", significance)

    table = build_table3(
        evaluation.metrics,
        significance,
        reference if reference in models else None,
        main_k,
        strongest_baseline,
        alpha,
        hr_test=hr_test,
        map_test=map_test,
        per_pe=evaluation.per_pe,
    )
    paths["results/table3.md"] = atomic_write_text(results / "table3.md", table.to_markdown())
    paths["results/table3.tex"] = atomic_write_text(results / "table3.tex", table.to_latex())
    paths["results/table3.csv"] = _write_csv(results / "table3.csv", table.to_frame())

    consensus = consensus_per_pe(evaluation.per_pe)
    paths["results/seed_summary.csv"] = _write_csv(
        results / "seed_summary.csv", seed_summary(evaluation.metrics)
    )
    paths["results/bootstrap_ci.csv"] = _write_csv(
        results / "bootstrap_ci.csv",
        bootstrap_table(consensus, (main_k,), bootstrap_resamples, 0.95, seed, n_test=n_test),
    )
    paths["results/pairwise_tests.csv"] = _write_csv(
        results / "pairwise_tests.csv",
        pairwise_tests(consensus, (main_k,), alpha, n_test=n_test, hr_test=hr_test, map_test=map_test),
    )
    friedman = friedman_all(consensus, "map", main_k, alpha, n_test=n_test)
    friedman_frame = (
        pd.concat([r.to_frame().sort_values("average_rank") for r in friedman], ignore_index=True)
        if friedman
        else pd.DataFrame()
    )
    paths["results/friedman.csv"] = _write_csv(results / "friedman.csv", friedman_frame)

    from mmrec_ray.evaluation.figures import (  # matplotlib only when plotting
        figure_paths,
        plot_cd_diagram,
        plot_metric_at_k,
    )

    plot_metric_at_k(evaluation.metrics, figures / "map_at_k.png", "map")
    plot_metric_at_k(evaluation.metrics, figures / "hr_at_k.png", "hr")
    plot_cd_diagram(friedman, figures / "cd_diagram.png")
    for name in ("map_at_k", "hr_at_k", "cd_diagram"):
        for path in figure_paths(figures / f"{name}.png").values():
            paths[f"figures/{path.name}"] = path

    # Written last: the pipeline trusts the results only with it (a run killed half-way through this function
    # leaves table3.md next to missing statistics and figures).
    paths["results/aggregate.json"] = atomic_write_text(
        results / "aggregate.json",
        json.dumps({"predictions": sorted(p.name for p in files), "files": sorted(paths)}, indent=1),
    )
    for message in messages:
        say(f"aggregate: {message}")
    say(f"aggregate: wrote {len(paths)} files under {results} and {figures}")
    if show_table:  # the pipeline prints it once, at the very end of the run
        say("")
        say(table.to_markdown())
    return AggregateResult(
        table=table, evaluation=evaluation, significance=significance, paths=paths, messages=messages
    )
