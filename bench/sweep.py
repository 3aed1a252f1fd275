"""Does the ranking of models in Table 3 change under a larger hyperparameter search? (#15 item 5)

    python -m bench.sweep [--scale 0.1] [--trials-per-model 16] [--search random] [--max-epochs 3]
                          [--seeds 0,1,2] [--fit-max-epochs 10] [--models demo] [--no-control]
                          [--workdir DIR] [--keep] [--results bench/results]

Runs the whole pipeline (``mmrec run``, each in its own process) on the same generated data (``--no-text``
embeddings, so no encoder runs), with identical data, models, epochs, ASHA and fit seeds; only the tune stage
differs:

* **grid** — the paper's protocol: every combination of two values of each of ``dropout`` [0.2, 0.4], ``units``
  [64, 128], ``batch_size`` [64, 128] and ``learning_rate`` [1e-3, 3e-3] (the first log2(N) of them for N
  trials per model; the others at their first value). One Tune run per dependency level.
* **random, grid's space** (the control; ``--no-control`` skips it) — ``--search`` over the grid's own values
  (as choices), N samples per model: what the searcher itself costs (one Tune run per model, one after the
  other, each draining to its last trial).
* **random** or **optuna** (``--search``), the larger space — N sampled trials per model from ``batch_size``
  {32, 64, 128, 256}, ``units`` {32, 64, 128, 256}, ``dropout`` uniform(0.1, 0.5), ``learning_rate``
  loguniform(1e-4, 1e-2), declared per model through ``tune.spaces`` (no model file is edited).

Every sweep has the same number of trials (N per searched model; the demo's 12 models of that run searched 14
spaces with their components, so N = 16 gave 224 trials per sweep). Reported: each tune stage's wall time, trials/hour and
trial-epochs (``bench/results/sweep_cpu.json``: seconds per trial and per trial-epoch of each sampled sweep
against the grid, same machine, same command), the final Table 3 of each side by side (HR@3 / MAP@3 on the
union, MAP@3 on the intersection, mean over seeds) with each model's rank on Union MAP@3, Kendall's tau of each
ranking against the grid's, and the models whose rank changed (``bench/results/sweep_cpu.md``, printed).
``--keep`` keeps the run directories (each ``report.html`` has its sweep section).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _name, _value in {"RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_name, _value)

from bench.common import (  # noqa: E402
    RESULTS_DIR,
    cpu_device,
    make_row,
    print_rows,
    this_command,
    update_readme,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]
GRID_DIMENSIONS = [
    ("dropout", [0.2, 0.4]),
    ("units", [64, 128]),
    ("batch_size", [64, 128]),
    ("learning_rate", [1.0e-3, 3.0e-3]),
]
LARGER_SPACE = {
    "batch_size": {"choice": [32, 64, 128, 256]},
    "units": {"choice": [32, 64, 128, 256]},
    "dropout": {"uniform": [0.1, 0.5]},
    "learning_rate": {"loguniform": [1.0e-4, 1.0e-2]},
}
K = 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scale", type=float, default=0.1, help="generated data scale (1 = the released size)"
    )
    parser.add_argument("--trials-per-model", type=int, default=16, choices=[2, 4, 8, 16])
    parser.add_argument("--search", default="random", choices=["random", "optuna"], help="the larger search")
    parser.add_argument("--max-epochs", type=int, default=3, help="epochs per trial (ASHA may stop earlier)")
    parser.add_argument("--grace-period", type=int, default=1, help="ASHA: epochs before a trial may stop")
    parser.add_argument("--seeds", default="0,1,2", help="final-fit seeds")
    parser.add_argument("--fit-max-epochs", type=int, default=10, help="final fits' epoch cap (patience 3)")
    parser.add_argument("--no-control", action="store_true", help="skip the random-over-the-grid control")
    parser.add_argument("--models", default="demo", help="comma-separated models, or 'demo' (its twelve)")
    parser.add_argument("--embedding-dim", type=int, default=64, help="generated embedding width")
    parser.add_argument("--workdir", default=None, help="where data and both runs go (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the run directories (needs --workdir)")
    parser.add_argument("--results", default=str(RESULTS_DIR))
    return parser.parse_args(argv)


def demo_models() -> list[str]:
    import yaml

    return list(yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["models"])


def searched_models(models: list[str]) -> list[str]:
    """Every model the tune stage searches for ``models`` (components included), in tuning order."""
    from mmrec_ray.models import registry

    return [m for m in registry.dependency_order(models) if registry.get(m).search_space]


def base_config(args, models: list[str], data_dir: Path) -> dict:
    """demo.yaml with the bench's data, models, epochs and seeds (the same for both sweeps)."""
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    cfg["models"] = list(models)
    cfg["data"].update(
        {"path": str(data_dir), "scale": args.scale, "text": False, "embedding_dim": args.embedding_dim}
    )
    cfg["analyses"] = {"enabled": False}
    cfg["tune"].update(
        {
            "max_epochs": args.max_epochs,
            "grace_period": args.grace_period,
            "cpus_per_trial": 1.0,
            "num_anchors": [50],
            "batch_size": None,
            "units": None,
            "dropout": None,
        }
    )
    cfg["fit"]["seeds"] = [int(s) for s in args.seeds.split(",")]
    cfg["training"].update({"max_epochs": args.fit_max_epochs, "patience": 3})
    return cfg


def grid_config(base: dict, models: list[str], trials: int) -> dict:
    """A grid of ``trials`` points per searched model: two values of the first log2(trials) dimensions; the
    others at one value (the first), so both sweeps search the same fields."""
    import copy

    cfg = copy.deepcopy(base)
    count = int(round(math.log2(trials)))
    cfg["tune"].update({"search": "grid", "spaces": {}})
    for index, (field, values) in enumerate(GRID_DIMENSIONS):
        values = values if index < count else values[:1]
        if field == "learning_rate":  # not a paper-grid shorthand: each model's space gets it
            for m in searched_models(models):
                cfg["tune"]["spaces"].setdefault(m, {})["learning_rate"] = {"grid": list(values)}
        else:
            cfg["tune"][field] = list(values)
    return cfg


def sampled_config(base: dict, models: list[str], search: str, trials: int, larger: bool = True) -> dict:
    """``search`` with ``trials`` samples per searched model: over the larger space, or (``larger=False``) over
    the grid's own values as choices."""
    import copy

    cfg = copy.deepcopy(grid_config(base, models, trials)) if not larger else copy.deepcopy(base)
    cfg["tune"].update({"search": search, "num_samples": trials})
    if larger:
        cfg["tune"]["spaces"] = {m: copy.deepcopy(LARGER_SPACE) for m in searched_models(models)}
    return cfg


def run_pipeline(run_dir: Path, config: dict, workdir: Path, name: str) -> float:
    """``mmrec run`` in its own process (a fresh Ray each) on ``config``; returns its wall time."""
    import yaml

    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "mmrec_ray.cli", "run", "--config", str(path), "--run-dir", str(run_dir)]
    log = workdir / f"{name}.log"
    started = time.perf_counter()
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}); see {log}")
    return time.perf_counter() - started


def sweep_facts(run_dir: Path) -> dict:
    import pandas as pd

    manifest = json.loads((run_dir / "manifest.json").read_text())
    trials = pd.read_csv(run_dir / "tune" / "trials.csv")
    seconds = float(manifest["stages"]["tune"]["seconds"])
    best = pd.to_numeric(trials["best_val_loss"], errors="coerce")
    return {
        "tune_seconds": seconds,
        "fit_seconds": float(manifest["stages"]["fit"]["seconds"]),
        "trials": int(len(trials)),
        "completed": int((trials["status"] == "COMPLETED").sum()),
        "stopped_by_asha": int((trials["status"] == "STOPPED_BY_ASHA").sum()),
        "trials_per_hour": len(trials) / seconds * 3600.0,
        "epochs": int(pd.to_numeric(trials["epochs"], errors="coerce").fillna(0).sum()),
        "best_val_loss": {m: float(g.min()) for m, g in best.groupby(trials["model"])},
    }


def table3_side_by_side(dirs: dict[str, Path]):
    """Models x (union HR/MAP@K, intersection MAP@K) of every sweep, with each sweep's rank on union MAP@K;
    Kendall's tau of each ranking against the first sweep's (the grid), and the rank changes."""
    import pandas as pd
    from scipy.stats import kendalltau

    from mmrec_ray.evaluation.tables import display_name

    tables = {name: pd.read_csv(d / "results" / "table3.csv").set_index("model") for name, d in dirs.items()}
    names = list(dirs)
    first = tables[names[0]]
    metrics = (
        (f"union_hr@{K}_mean", f"Union HR@{K}"),
        (f"union_map@{K}_mean", f"Union MAP@{K}"),
        (f"intersection_map@{K}_mean", f"Intersection MAP@{K}"),
    )
    rows = []
    for model in first.index:
        row = {"model": display_name(model)}
        for column, title in metrics:
            for name, table in tables.items():
                present = model in table.index and column in table
                row[f"{title} {name}"] = float(table.loc[model, column]) if present else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    key = f"Union MAP@{K}"
    served = frame[[f"{key} {n}" for n in names]].notna().all(axis=1)
    for name in names:
        ranks = frame.loc[served, f"{key} {name}"].rank(ascending=False, method="min")
        frame[f"rank {name}"] = ranks.astype("Int64").reindex(frame.index)
    taus, changes = {}, {}
    for name in names[1:]:
        a, b = frame.loc[served, f"{key} {names[0]}"], frame.loc[served, f"{key} {name}"]
        taus[name] = float(kendalltau(a, b).statistic) if served.sum() > 1 else math.nan
        changes[name] = [
            f"{r['model']} {r[f'rank {names[0]}']}->{r[f'rank {name}']}"
            for _, r in frame[served].iterrows()
            if r[f"rank {names[0]}"] != r[f"rank {name}"]
        ]
    return frame, taus, changes


def _cell(value) -> str:
    if value is None or value is pd_na() or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def pd_na():
    import pandas as pd

    return pd.NA


def markdown(frame, facts: dict, taus: dict, changes: dict, args, command: str) -> str:
    names = list(facts)
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" if c == "model" else "---:" for c in frame.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    lines = [
        f"# Sweeps: paper-style grid vs sampled search (scale {args.scale:g}, {args.trials_per_model} trials per "
        f"searched model, <= {args.max_epochs} epochs per trial, ASHA grace {args.grace_period})",
        "",
        f"`{command}` on {cpu_device()}.",
        "",
        "| sweep | trials | completed | stopped by ASHA | trial epochs | tune stage (s) | trials/hour | "
        "s per trial-epoch | fit stage (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in facts.items():
        lines.append(
            f"| {name} | {f['trials']} | {f['completed']} | {f['stopped_by_asha']} | {f['epochs']} | "
            f"{f['tune_seconds']:.0f} | {f['trials_per_hour']:.0f} | {f['tune_seconds'] / max(f['epochs'], 1):.2f} "
            f"| {f['fit_seconds']:.0f} |"
        )
    summary = "; ".join(
        f"{name}: Kendall's tau {taus[name]:.2f}, rank changes: {', '.join(changes[name]) or 'none'}"
        for name in names[1:]
    )
    lines += [
        "",
        f"Final Table 3 (mean over seeds {args.seeds}) of each sweep's best configs; ranks on Union MAP@{K} "
        f"(the models that serve the union), against the grid's ranking — {summary}.",
        "",
        head,
        rule,
        *body,
        "",
        "Best validation loss per model (lower is better):",
        "",
        "| model | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for model in facts[names[0]]["best_val_loss"]:
        cells = [facts[n]["best_val_loss"].get(model, math.nan) for n in names]
        lines.append(f"| {model} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    models = demo_models() if args.models == "demo" else args.models.split(",")
    command = this_command()
    results = Path(args.results)
    if args.keep and not args.workdir:
        raise SystemExit("--keep needs --workdir")
    workdir_context = (
        tempfile.TemporaryDirectory(prefix="mmrec-sweep-", dir=args.workdir) if not args.keep else None
    )
    workdir = Path(workdir_context.name) if workdir_context else Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n = args.trials_per_model
    base = base_config(args, models, workdir / "data")
    sweeps = {"grid": grid_config(base, models, n)}
    if not args.no_control:
        sweeps[f"{args.search} (grid's space)"] = sampled_config(base, models, args.search, n, larger=False)
    sweeps[args.search] = sampled_config(base, models, args.search, n)
    try:
        facts, dirs = {}, {}
        for index, (name, config) in enumerate(sweeps.items()):
            dirs[name] = workdir / f"run_{index}"
            print(f"[bench.sweep] {name}: mmrec run -> {dirs[name]}", flush=True)
            wall = run_pipeline(dirs[name], config, workdir, f"sweep{index}")
            facts[name] = {**sweep_facts(dirs[name]), "pipeline_seconds": wall}
            print(
                f"[bench.sweep] {name}: {facts[name]['trials']} trials in {facts[name]['tune_seconds']:.0f} s "
                f"({facts[name]['trials_per_hour']:.0f} trials/hour); pipeline {wall:.0f} s",
                flush=True,
            )
        frame, taus, changes = table3_side_by_side(dirs)
        text = markdown(frame, facts, taus, changes, args, command)
    finally:
        if workdir_context:
            workdir_context.cleanup()
    device = cpu_device()
    g = facts["grid"]
    baseline = f"paper-style grid ({g['trials']} trials, one Tune run per level), same settings"
    rows = []
    for name, f in list(facts.items())[1:]:
        benchmark = f"sweep/tune stage, {name} ({f['trials']} trials, scale {args.scale:g})"
        rows += [
            make_row(benchmark, "seconds/trial", f["tune_seconds"] / f["trials"], baseline,
                     g["tune_seconds"] / g["trials"], device, command),
            make_row(benchmark, "seconds/trial-epoch", f["tune_seconds"] / max(f["epochs"], 1), baseline,
                     g["tune_seconds"] / max(g["epochs"], 1), device, command),
        ]  # fmt: skip
    write_results("sweep_cpu", rows, results)
    (results / "sweep_cpu.md").write_text(text)
    print_rows(rows)
    print(text)
    update_readme(directory=results)


if __name__ == "__main__":
    main()
