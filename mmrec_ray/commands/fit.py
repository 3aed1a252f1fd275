"""`mmrec fit`: the final fits of every model and seed — the pipeline's fit stage on Ray Train, or ``--local`` in
this process without Ray.

Stage (default): what `mmrec run` runs after tune, with the same ``--config``/``--run-dir``/``--set`` and each
model's best config from RUN_DIR/tune/; writes RUN_DIR/predictions/ and RUN_DIR/checkpoints/.

``--local`` (implied by ``--model``): train the named models on a prepared RUN_DIR (from `mmrec prepare`) and write,
per (model, seed): RUN_DIR/predictions/{model}__seed{seed}.parquet (test PEs, long format),
RUN_DIR/checkpoints/{model}/seed={seed}.pt, and per model RUN_DIR/fit/{model}/config.yaml (resolved params,
training settings, seeds, data fingerprint, versions). Re-running skips pairs whose predictions exist; a
dependency (e.g. Conversation for Late Fusion) whose checkpoint exists is loaded, not retrained. Its ``--set``
also takes hyperparameters: ``units=64`` (every model's), ``conversation.units=64`` (one model's).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import yaml

from mmrec_ray.commands._options import add_pipeline_arguments
from mmrec_ray.config import ExperimentConfig, ModelParams, apply_overrides, from_dict, load_yaml
from mmrec_ray.errors import ConfigError
from mmrec_ray.models import registry

HELP = "final fits of every model and seed: the Ray Train stage, or --local for named models without Ray"
DEFAULT_CONFIG = "demo"

_PARAM_FIELDS = {f.name for f in dataclasses.fields(ModelParams)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_pipeline_arguments(
        parser,
        config_default=None,
        config_help=f"experiment config: a YAML path or a packaged name (default: {DEFAULT_CONFIG}; with --local "
        "the built-in defaults)",
        run_dir_help="run directory: a local path or a URI (s3://, gs://) for the stage; with --local a prepared "
        "run (RUN_DIR/prepared/tensors from `mmrec prepare`)",
        set_help="override a config key, e.g. training.max_epochs=3; with --local also a hyperparameter, e.g. "
        "units=64 or conversation.units=64; repeatable",
        deprecated=("--storage", "--run"),
    )
    parser.add_argument(
        "--local",
        action="store_true",
        help="train in this process, without Ray: the --model(s) on a prepared --run-dir, with the config's "
        "hyperparameters (no tuning)",
    )
    parser.add_argument(
        "--model",
        metavar="NAMES",
        help="with --local (implied): model name(s), comma-separated; `mmrec models` lists them",
    )
    parser.add_argument(
        "--seeds",
        metavar="SEEDS",
        help="with --local: comma-separated seeds (default: the config's fit.seeds)",
    )


def run(args: argparse.Namespace) -> int:
    if args.local or args.model:
        return _run_local(args)
    if args.seeds is not None:
        raise ConfigError(
            "--seeds is for --local fits; the stage fits the config's fit.seeds (--set fit.seeds=[0,1])"
        )
    from mmrec_ray.pipeline import runner as pipeline

    args.config = args.config or _default_config()
    pipeline.run_stage(pipeline.config_from_args(args), "fit", from_stage=args.from_stage)
    return 0


def _default_config() -> str:
    from mmrec_ray.configs import resolve

    return resolve(DEFAULT_CONFIG)


def _split_overrides(overrides: list[str]) -> tuple[dict, dict[str, dict], list[str]]:
    """(params for every model, params per model, remaining experiment-config overrides)."""
    everyone: dict = {}
    per_model: dict[str, dict] = {}
    rest: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else None
        parts = key.strip().split(".")
        if len(parts) == 1 and parts[0] in _PARAM_FIELDS:
            everyone[parts[0]] = value
        elif (
            len(parts) == 2
            and parts[1] in _PARAM_FIELDS
            and parts[0] in registry.names(include_components=True)
        ):
            per_model.setdefault(parts[0], {})[parts[1]] = value
        else:
            rest.append(item)
    return everyone, per_model, rest


def resolve(
    args: argparse.Namespace,
) -> tuple[ExperimentConfig, list[str], list[int], dict[str, ModelParams]]:
    from mmrec_ray.models.params import default_params

    models = [m.strip() for m in (args.model or "").split(",") if m.strip()]
    if not models:
        raise ConfigError("--local needs --model: give at least one model name (`mmrec models` lists them)")
    for name in models:
        try:
            registry.get(name)
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
    everyone, per_model, rest = _split_overrides(args.overrides)
    data = load_yaml(args.config) if args.config else {}
    apply_overrides(data, rest)
    cfg = from_dict(ExperimentConfig, data, where=str(args.config or "config"))
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    else:
        seeds = list(cfg.fit.seeds)
    params: dict[str, ModelParams] = {}
    for name in registry.dependency_order(models):
        base = cfg.hyperparameters.get(name) or default_params(name)
        values = {**dataclasses.asdict(base), **everyone, **per_model.get(name, {})}
        params[name] = from_dict(ModelParams, values, where=f"hyperparameters.{name}")
    return cfg, models, seeds, params


def _run_local(args: argparse.Namespace) -> int:
    from mmrec_ray.data.features import FeatureStore
    from mmrec_ray.data.tensors import PreparedData
    from mmrec_ray.training import runner
    from mmrec_ray.training.loop import resolve_device

    for flag, value in (("--from", args.from_stage), ("--break-lock", args.break_lock)):
        if value:
            raise ConfigError(f"{flag} is for the Ray stage, not for --local fits")
    if not args.storage:
        raise ConfigError("--local needs --run-dir: a run directory prepared by `mmrec prepare`")
    cfg, models, seeds, params = resolve(args)
    run_dir = Path(args.storage)
    data = PreparedData.load(run_dir / "prepared" / "tensors")
    training = cfg.training
    store = FeatureStore(data, device=resolve_device(training))
    for name in models:
        _write_config(run_dir, name, params, cfg, seeds, data)

    for seed in seeds:
        todo = [m for m in models if not runner.predictions_path(run_dir, m, seed).exists()]
        if not todo:
            print(f"seed {seed}: predictions of {', '.join(models)} exist; skipped")
            continue
        provided = {}
        for name in registry.dependency_order(todo):
            if runner.checkpoint_path(run_dir, name, seed).exists():
                recommender, _ = runner.load_checkpoint(run_dir, name, seed, store, training)
                if dataclasses.asdict(recommender.params) != dataclasses.asdict(params[name]):
                    raise ConfigError(
                        f"{runner.checkpoint_path(run_dir, name, seed)} was trained with {recommender.params}, "
                        f"not {params[name]}; use another --run-dir or delete that checkpoint"
                    )
                changed = runner.changed_fidelity(run_dir, name, seed, training)
                if changed:
                    raise ConfigError(
                        f"{runner.checkpoint_path(run_dir, name, seed)} was trained with other fidelity switches "
                        f"({', '.join(changed)}); use another --run-dir or delete that checkpoint"
                    )
                provided[(name, seed)] = recommender

        def on_fitted(name, seed, recommender, result):
            runner.save_checkpoint(run_dir, recommender, result, training)
            print(
                f"fitted {name} seed {seed}: best epoch {result.best_epoch}, val loss {result.best_validation_loss:.4f}"
            )

        def on_epoch(name, seed, stage, epoch, train_loss, val_loss):
            print(
                f"  {name} seed {seed} [{stage}] epoch {epoch}: train {train_loss:.4f} val {val_loss:.4f}",
                flush=True,
            )

        started = time.perf_counter()
        fitted = runner.fit_models(
            data,
            todo,
            [seed],
            params,
            training,
            store=store,
            provided=provided,
            on_fitted=on_fitted,
            callback=on_epoch,
        )
        for name in todo:
            recommender, _ = fitted[(name, seed)]
            frame = runner.predict_test(recommender, store, data)
            runner.write_test_predictions(runner.predictions_path(run_dir, name, seed), frame)
            print(f"wrote {runner.predictions_path(run_dir, name, seed)} ({len(frame)} rows)")
        print(f"seed {seed}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return 0


def _write_config(run_dir, name, params, cfg, seeds, data) -> None:
    from mmrec_ray.io import atomic_write_text
    from mmrec_ray.training import runner

    needed = registry.dependency_order([name])
    resolved = {
        "model": name,
        "seeds": list(seeds),
        "params": {n: dataclasses.asdict(params[n]) for n in needed if n in params},
        "depends_on": list(registry.get(name).depends_on),
        "training": dataclasses.asdict(cfg.training),
        "data": {k: data.meta[k] for k in ("fingerprint", "data_fingerprint") if k in data.meta},
        "environment": runner.environment(),
    }
    atomic_write_text(Path(run_dir) / "fit" / name / "config.yaml", yaml.safe_dump(resolved, sort_keys=False))
