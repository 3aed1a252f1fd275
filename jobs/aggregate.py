"""Ray job entrypoint for the `aggregate` stage: `python jobs/aggregate.py --config CONFIG [--storage DIR|URI] [--set k=v]`.

Writes results/ and figures/, and the sweep summary tune/sweep.{json,md} when the tune stage ran."""

import argparse
import sys

from mmrec_ray.pipeline.runner import add_config_arguments, config_from_args, run_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    run_stage(config_from_args(args), "aggregate", from_stage=args.from_stage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
