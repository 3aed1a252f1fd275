"""Ray job entrypoint for the whole pipeline:
`ray job submit --working-dir . -- python jobs/pipeline.py --config configs/paper.yaml --storage s3://bucket/run`."""

import argparse
import sys

from mmrec_ray.pipeline.runner import add_config_arguments, config_from_args, run_pipeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    run_pipeline(config_from_args(args), from_stage=args.from_stage, stages=args.stages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
