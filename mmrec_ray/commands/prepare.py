"""`mmrec prepare --data DIR --out RUN_DIR`: released-format folder -> canonical Parquet + model-ready tensors.

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

from mmrec_ray.commands._reading import add_reading_arguments, chunk_bytes
from mmrec_ray.config import FidelityConfig, add_override_argument, load_config
from mmrec_ray.data.prepare import EMBEDDING_MODES, PrepareOptions, prepare

HELP = "read a dataset folder (released format), validate it, write canonical Parquet and model-ready tensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder in the released format (SPEC 2.1)")
    parser.add_argument("--out", required=True, help="run directory; output goes to RUN_DIR/prepared/")
    parser.add_argument("--force", action="store_true", help="rebuild even if RUN_DIR/prepared is up to date")
    parser.add_argument(
        "--encoder",
        default=PrepareOptions.encoder,
        help="Hugging Face encoder (name or folder) used only when embeddings must be computed from text "
        "(default: the packaged MiniLM)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=PrepareOptions.encoder_batch_size, help="encoder batch size"
    )
    parser.add_argument(
        "--max-length", type=int, default=PrepareOptions.encoder_max_length, help="encoder max tokens"
    )
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
        "--config", default=None, help="experiment config YAML (its `fidelity` section: vocabulary, keyword)"
    )
    add_override_argument(parser, help="override a config key, e.g. fidelity.vocabulary.share=per_occurrence")


def fidelity_arguments(fidelity: FidelityConfig) -> list[str]:
    """The ``--set`` arguments that hand a config's prepare-time switches to `mmrec prepare` (the pipeline)."""
    switches = PrepareOptions.switches_of(fidelity)
    return [
        item
        for section, values in switches.items()
        for key, value in values.items()
        for item in ("--set", f"fidelity.{section}.{key}={value}")
    ]


def run(args: argparse.Namespace) -> int:
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
    prepare(args.data, args.out, force=args.force, options=options, canonical_only=args.canonical_only)
    return 0
