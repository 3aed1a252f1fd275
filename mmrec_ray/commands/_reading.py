"""Options and notes shared by the commands that read a dataset folder (`validate`, `prepare`, `preprocess`,
`evaluate`)."""

from __future__ import annotations

import argparse
import sys

MEBIBYTE = 1 << 20
# The library's defaults (data.released.DEFAULT_CHUNK_BYTES, data.vocab.VOCAB_THRESHOLD), written out here because
# importing those modules pulls in numpy and pyarrow while `mmrec --help` builds every parser; tests/test_cli.py
# checks that they agree.
DEFAULT_CHUNK_MB = 4.0
VOCAB_THRESHOLD = 0.001
# Under this many test PEs one PE moves HR@k by more than a percentage point, and a relative change between models
# (the report's "+500.00 %" on a 4-PE test split) is noise.
MIN_TEST_PES = 100


def add_reading_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chunk-mb", type=float, default=DEFAULT_CHUNK_MB, help="embedding CSV streaming block (MB)"
    )
    parser.add_argument(
        "--vocab-threshold",
        type=float,
        default=VOCAB_THRESHOLD,
        help="vocabulary share threshold: tags and keywords rarer than this in training are dropped",
    )


def chunk_bytes(args: argparse.Namespace) -> int:
    return int(args.chunk_mb * MEBIBYTE)


def warn_if_small_test_split(prog: str, test_pes: int | None) -> None:
    """One line on stderr when the test split (the last 10 % of PEs by id) is too small for its metrics to mean
    anything; the command still succeeds."""
    if test_pes is None or test_pes >= MIN_TEST_PES:
        return
    print(
        f"{prog}: warning: the test split has only {test_pes} PEs (the last 10 % by purchase_event_id); metrics "
        f"and differences between models on fewer than {MIN_TEST_PES} test PEs are noise",
        file=sys.stderr,
    )
