"""`mmrec run [--config demo] [--run-dir DIR|URI] [--set key=value ...]`: the whole pipeline.

``--print-config`` prints the config the run would use (the file, the overrides and the run directory applied) as
YAML and exits without running anything; `mmrec run --config FILE` with that output runs the same experiment.
"""

from __future__ import annotations

import argparse

from mmrec_ray.commands._options import add_pipeline_arguments

HELP = "run the whole pipeline (generate/prepare → embed → tune → fit → aggregate), resuming finished stages"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(parser)
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved config as YAML and exit without running",
    )


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.pipeline.runner import config_from_args, run_pipeline

    if args.print_config:
        from mmrec_ray.config import dump_config

        # Printing must not touch the run directory, so the lock is left alone.
        print(
            dump_config(config_from_args(argparse.Namespace(**{**vars(args), "break_lock": False}))), end=""
        )
        return 0
    run_pipeline(config_from_args(args), from_stage=args.from_stage, stages=args.stages)
    return 0
