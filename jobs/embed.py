"""Job entrypoint for the `embed` stage (``ray job submit ... -- python jobs/embed.py --run RUN_DIR ...``).

Thin on purpose: the same arguments as ``mmrec embed``; the work is in ``mmrec_ray.pipeline.embed``.
"""

from __future__ import annotations

import argparse
import sys

from mmrec_ray.cli import main
from mmrec_ray.commands import embed

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="jobs/embed.py", description=embed.HELP)
    embed.add_arguments(parser)
    parser.parse_args()  # --help and argument errors before Ray starts
    sys.exit(main(["embed", *sys.argv[1:]]))
