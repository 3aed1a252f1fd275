"""`mmrec embed`: sentence embeddings (and keyword IDs) for a prepared run, on Ray Data.

Reads RUN_DIR/prepared/parquet/conversation_text.parquet (or ``--text`` CSV/Parquet with columns
conversation_id, sentence_number, sentence_speaker, text) and writes Parquet parts to
RUN_DIR/prepared/parquet/conversation_embeddings/ (replacing what was there). Defaults come from the config's
``embed`` section; flags override them. Starts a local Ray unless RAY_ADDRESS points at a cluster.
"""

from __future__ import annotations

import argparse

from mmrec_ray.commands._options import add_config_argument, add_run_dir_argument
from mmrec_ray.config import ExperimentConfig, apply_overrides, from_dict, load_yaml

HELP = "compute sentence embeddings (and keyword IDs) with a Hugging Face encoder on a Ray Data actor pool"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir_argument(
        parser, "run directory (holds prepared/parquet/conversation_text.parquet)", required=True
    )
    parser.add_argument(
        "--text", default=None, help="sentence text CSV/Parquet instead of the run's prepared text"
    )
    parser.add_argument(
        "--encoder",
        default=None,
        help="Hugging Face model name or path (default: the config's embed.encoder, the packaged MiniLM)",
    )
    parser.add_argument(
        "--num-gpus",
        type=float,
        default=None,
        help="GPUs per encoder actor; 0 = CPU actors (default: the config's embed.num_gpus)",
    )
    parser.add_argument(
        "--num-actors",
        type=int,
        default=None,
        help="encoder actors, one per GPU on a GPU cluster (default: the config's embed.num_actors)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="sentences per encoder call, length-sorted (default: the config's embed.batch_size)",
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens per sentence after truncation (default: the config's embed.max_length)",
    )
    parser.add_argument(
        "--keywords", default=None, help="keyword_mapping.csv (word,keyword_id) to also emit keyword IDs"
    )
    add_config_argument(
        parser,
        help="experiment config, a YAML path or a packaged name: its `embed` section (default: the built-in defaults)",
    )
    parser.add_argument(
        "--address", default=None, help="Ray address (default: RAY_ADDRESS, else a local Ray)"
    )
    parser.add_argument(
        "--force", action="store_true", help="recompute even if the output matches the inputs"
    )


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.pipeline.embed import run_embed, summary_line
    from mmrec_ray.pipeline.ray_env import init_ray, shutdown_ray

    data = load_yaml(args.config) if args.config else {}
    overrides = [
        f"embed.{key}={value}"
        for key, value in (
            ("encoder", args.encoder),
            ("num_gpus", args.num_gpus),
            ("num_actors", args.num_actors),
            ("batch_size", args.batch_size),
            ("max_length", args.max_length),
        )
        if value is not None
    ]
    config = from_dict(ExperimentConfig, apply_overrides(data, overrides)).embed
    started = init_ray(address=args.address)
    try:
        summary = run_embed(
            args.run_dir,
            text=args.text,
            encoder=config.encoder,
            num_gpus=config.num_gpus,
            num_actors=config.num_actors,
            batch_size=config.batch_size,
            max_length=config.max_length,
            dtype=config.dtype,
            num_cpus_per_actor=config.num_cpus_per_actor,
            threads_per_actor=config.threads_per_actor,
            token_budget=config.token_budget,
            cache_size=config.cache_size,
            keyword_mapping=args.keywords,
            force=args.force,
        )
    finally:
        shutdown_ray(started)
    print(summary_line(summary))
    return 0
