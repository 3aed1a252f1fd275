"""`mmrec validate --data DIR`: check a dataset folder and print a data-quality report.

Exit status 0 when the data is usable; 2 with a one-line error (file, row, column) otherwise. A test split too
small to measure anything is a warning on stderr.
"""

from __future__ import annotations

import argparse
import json

from mmrec_ray.commands._reading import add_reading_arguments, chunk_bytes, warn_if_small_test_split

HELP = "validate a dataset folder (released format) and print a data-quality report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="dataset folder in the released format (README, Data formats)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_reading_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.data.validate import format_report, validate_dataset

    report = validate_dataset(args.data, chunk_bytes=chunk_bytes(args), threshold=args.vocab_threshold)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    warn_if_small_test_split("mmrec validate", report["counts"]["test_pes"])
    return 0
