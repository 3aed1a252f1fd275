"""`mmrec run --config configs/demo.yaml [--storage DIR|URI] [--set key=value ...]`: the whole pipeline."""

from __future__ import annotations

import argparse

HELP = "run the whole pipeline (generate/prepare → embed → tune → fit → aggregate), resuming finished stages"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from mmrec_ray.pipeline.runner import add_config_arguments

    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.pipeline.runner import config_from_args, run_pipeline

    run_pipeline(config_from_args(args), from_stage=args.from_stage)
    return 0
