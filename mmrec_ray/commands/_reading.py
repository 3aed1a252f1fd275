"""Options shared by the commands that read a dataset folder (`validate`, `prepare`)."""

from __future__ import annotations

import argparse

from mmrec_ray.data.released import DEFAULT_CHUNK_BYTES
from mmrec_ray.data.vocab import VOCAB_THRESHOLD

MEBIBYTE = 1 << 20


def add_reading_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chunk-mb",
        type=float,
        default=DEFAULT_CHUNK_BYTES / MEBIBYTE,
        help="embedding CSV streaming block (MB)",
    )
    parser.add_argument(
        "--vocab-threshold", type=float, default=VOCAB_THRESHOLD, help="vocabulary share threshold"
    )


def chunk_bytes(args: argparse.Namespace) -> int:
    return int(args.chunk_mb * MEBIBYTE)
