"""`mmrec report RUN_DIR`: write RUN_DIR/report.md and a self-contained RUN_DIR/report.html from a run's results."""

from __future__ import annotations

import argparse

HELP = "write RUN_DIR/report.md and RUN_DIR/report.html (tables, figures, statistics, summary) from a run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", help="run directory (results/, figures/, analyses/ inside)")
    from mmrec_ray.commands._options import add_run_dir_argument

    add_run_dir_argument(parser, "the run directory, as the other commands take it", dest="run_option")
    parser.add_argument(
        "--k", type=int, dest="main_k", help="headline cut-off (default: the run's config, else 3)"
    )
    parser.add_argument(
        "--alpha", type=float, help="significance level (default: the run's config, else 0.05)"
    )


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.errors import ConfigError
    from mmrec_ray.evaluation.report import write_report

    run_dir = args.run_dir or args.run_option
    if not run_dir:
        raise ConfigError("mmrec report: give the run directory (mmrec report RUN_DIR)")
    write_report(run_dir, args.main_k, args.alpha)
    return 0
