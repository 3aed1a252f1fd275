"""`mmrec train`: the old name of `mmrec fit` (the Ray Train stage). It still works and says so on stderr."""

from __future__ import annotations

import argparse
import sys

from mmrec_ray.commands import fit

HELP = "deprecated name of `mmrec fit` (the Ray Train stage)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fit.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    print(
        "mmrec train: warning: `mmrec train` is deprecated; use `mmrec fit` (the same Ray stage)",
        file=sys.stderr,
    )
    return fit.run(args)
