"""`mmrec analyze --run-dir RUN_DIR`: the paper's section 7 analyses and the modality ablation on a fitted run.

Settings come from ``--config`` (default: the run's own resolved ``RUN_DIR/config.yaml`` when there is one);
without a config the models and seeds are read from the run's checkpoints. The shuffle study retrains on Ray
unless ``--local``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmrec_ray.commands._options import add_config_argument, add_run_dir_argument
from mmrec_ray.config import add_override_argument

HELP = "run the analyses (event-order shuffle, number of events, t-SNE, modality ablation) on a fitted run"
ANALYSES = ("shuffle", "num_events", "tsne", "ablation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_dir_argument(
        parser, "run directory (prepared/tensors, checkpoints/, predictions/)", required=True
    )
    add_config_argument(
        parser,
        help="experiment config, a YAML path or a packaged name (default: RUN_DIR/config.yaml if present, else "
        "the models and seeds of the run's checkpoints)",
    )
    parser.add_argument(
        "--only", help=f"comma-separated subset of {','.join(ANALYSES)} (default: every enabled, pending one)"
    )
    parser.add_argument(
        "--local", action="store_true", help="retrain the shuffle study in-process, without Ray"
    )
    add_override_argument(parser)


def _config(args: argparse.Namespace):
    from mmrec_ray.config import load_config
    from mmrec_ray.evaluation.analyses import checkpoint_seeds
    from mmrec_ray.models import registry

    run_dir = Path(args.run_dir)
    path = args.config or (run_dir / "config.yaml" if (run_dir / "config.yaml").exists() else None)
    cfg = load_config(path, args.overrides)
    if path is None:  # no config: what the run really fitted
        cfg.models = [m for m in registry.names() if checkpoint_seeds(run_dir, m)]
        seeds = sorted({s for m in cfg.models for s in checkpoint_seeds(run_dir, m)})
        cfg.fit.seeds = seeds or cfg.fit.seeds
    cfg.run_dir = str(run_dir.resolve())
    return cfg


def run(args: argparse.Namespace) -> int:
    from mmrec_ray.errors import ConfigError
    from mmrec_ray.pipeline import ray_env
    from mmrec_ray.pipeline.analyses import run_analyses

    cfg = _config(args)
    only = None
    if args.only:
        only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(only) - set(ANALYSES))
        if unknown:
            raise ConfigError(f"--only: unknown analyses {unknown}; choose from {list(ANALYSES)}")
    started = [False]

    def ensure_ray() -> None:
        if not started[0]:
            started[0] = ray_env.init_ray()

    try:
        summary = run_analyses(cfg, cfg.run_dir, print, None if args.local else ensure_ray, only)
    finally:
        ray_env.shutdown_ray(started[0])
    print(f"analyze: {summary}")
    return 0
