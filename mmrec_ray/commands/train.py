"""`mmrec train --config ...`: the Ray Train stage (five-seed final fits, predictions into RUN_DIR/predictions/).

`mmrec fit` is the Ray-free local equivalent for one model."""

from __future__ import annotations

import argparse

HELP = "Ray Train: final fits of every model and seed with its best config; writes RUN_DIR/predictions/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmrec_ray.pipeline.runner import add_config_arguments

    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.pipeline.runner import config_from_args, run_stage

    run_stage(config_from_args(args), "fit", from_stage=args.from_stage)
    return 0
