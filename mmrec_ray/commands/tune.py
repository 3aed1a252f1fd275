"""`mmrec tune`: the pipeline's Ray Tune stage (best config per model into RUN_DIR/tune/)."""

from __future__ import annotations

import argparse

from mmrec_ray.commands._options import add_pipeline_arguments

HELP = "Ray Tune: grid search with ASHA over every model's hyperparameters; writes RUN_DIR/tune/best_configs.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.pipeline.runner import config_from_args, run_stage

    run_stage(config_from_args(args), "tune", from_stage=args.from_stage)
    return 0
