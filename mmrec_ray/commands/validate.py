"""`mmrec validate --data DIR`: check a dataset folder and print a data-quality report.

Exit status 0 when the data is usable; 2 with a one-line error (file, row, column) otherwise.
"""

from __future__ import annotations

import argparse
import json

from mmrec_ray.data.released import DEFAULT_CHUNK_BYTES
from mmrec_ray.data.validate import format_report, validate_dataset
from mmrec_ray.data.vocab import VOCAB_THRESHOLD

HELP = "validate a dataset folder (released format) and print a data-quality report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder in the released format (SPEC 2.1)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--chunk-mb",
        type=float,
        default=DEFAULT_CHUNK_BYTES / (1 << 20),
        help="embedding CSV streaming block (MB)",
    )
    parser.add_argument(
        "--vocab-threshold", type=float, default=VOCAB_THRESHOLD, help="vocabulary share threshold"
    )


def run(args: argparse.Namespace) -> int:
    report = validate_dataset(
        args.data, chunk_bytes=int(args.chunk_mb * (1 << 20)), threshold=args.vocab_threshold
    )
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0
