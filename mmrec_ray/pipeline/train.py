"""The `fit` stage (Ray Train): the five-seed final fits of every model with its best config, in parallel.

* One ``TorchTrainer`` per seed (stable run name ``{run}__seed{seed}``), as many at once as the cluster holds
  (``concurrent_trainers``; the next starts when one ends), each driven by a lightweight Ray task
  (``num_cpus=0``: the worker holds the resources, the driving task only waits). Its one worker fits the seed's
  models in dependency order, so Late Fusion of seed s uses Conversation and Web Session of seed s, teachers and
  generators likewise: a dependency is fitted once per seed and reused, never retrained.
  One trainer per seed rather than per (model, seed): a TorchTrainer costs tens of seconds of process start-up on
  a small machine, and the models are small enough that one worker per seed keeps a node busy.
* After every model the worker reports a Ray Train checkpoint holding all the seed's fitted models and test
  predictions so far. A trainer restarted under the same name resumes from it (``ray.train.get_checkpoint``)
  and fits only what is missing; models finished in an earlier run come in as checkpoint bytes.
* The driver writes the results into the run directory: ``RUN_DIR/checkpoints/{model}/seed={seed}.pt`` and
  ``RUN_DIR/predictions/{model}__seed{seed}.parquet`` (atomic). A (model, seed) whose outputs exist is skipped.
* Ray Train's folder of a seed (``RUN_DIR/ray/train/{run}__seed{seed}``, or under the URI) is removed once the
  seed's outputs are in the run directory: nothing reads it again. Of a seed still to fit, only the checkpoint
  that Ray Train's snapshot names is kept; other ``checkpoint_*`` folders are what a killed attempt wrote after
  its last snapshot, which a restarted trainer never reads.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from mmrec_ray.config import ExperimentConfig, ModelParams, TrainingConfig, from_dict
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.io import atomic_write
from mmrec_ray.models import registry
from mmrec_ray.pipeline import fitting
from mmrec_ray.pipeline.ray_env import ray_storage_path
from mmrec_ray.training.runner import (
    checkpoint_path,
    fit_one,
    predict_test,
    predictions_path,
    write_test_predictions,
)


def fit_models(cfg: ExperimentConfig) -> list[str]:
    return registry.dependency_order(list(cfg.models))


def final_params(cfg: ExperimentConfig, best: dict[str, dict[str, Any]], name: str) -> ModelParams:
    """The tuned config when Tune ran, else the configured (Table 2) parameters."""
    params = fitting.base_params(cfg, name)
    chosen = best.get(name) or {}
    values = {f: chosen[f] for f in ModelParams.__dataclass_fields__ if chosen.get(f) is not None}
    return from_dict(ModelParams, {**dataclasses.asdict(params), **values}, where=f"best config of {name}")


def is_finished(run_dir: Path, name: str, seed: int) -> bool:
    if not checkpoint_path(run_dir, name, seed).exists():
        return False
    return not registry.get(name).reported or predictions_path(run_dir, name, seed).exists()


def is_done(cfg: ExperimentConfig, run_dir: Path) -> bool:
    return all(is_finished(run_dir, n, s) for n in fit_models(cfg) for s in cfg.fit.seeds)


# --------------------------------------------------------------------------------------------------- worker
def _train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker: fit the seed's missing models in dependency order; report after each one."""
    import logging

    import ray
    import ray.train

    # Train logs two INFO lines per report (checkpoint created, result reported); our one line per model says it.
    for name in (
        "ray.train",
        "ray.train.v2._internal.execution.storage",
        "ray.train.v2._internal.execution.context",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    seed = config["seed"]
    training = from_dict(TrainingConfig, config["training"], where="training")
    data: PreparedData = ray.get(config["data"])
    store = fitting.make_store(data, training)
    fitted = {
        name: fitting.load_checkpoint_bytes(ray.get(ref), store, training)
        for name, ref in config["provided"].items()
    }
    with tempfile.TemporaryDirectory() as cumulative:
        cumulative = Path(cumulative)
        previous = ray.train.get_checkpoint()
        if previous is not None:  # a restarted trainer: keep what the earlier attempt reported
            with previous.as_directory() as directory:
                for file in Path(directory).iterdir():
                    shutil.copy(file, cumulative / file.name)
        restored = []  # models of an interrupted earlier attempt, taken from its checkpoint, not refitted
        for name in config["models"]:
            model_file = cumulative / f"{name}.pt"
            if model_file.exists():
                fitted[name] = fitting.load_checkpoint_bytes(model_file.read_bytes(), store, training)
                restored.append(name)
                if config.get("progress") is not None:
                    config["progress"].add.remote(1)
                continue
            started = time.perf_counter()
            params = ModelParams(**config["params"][name])
            dependencies = {d: fitted[d] for d in registry.get(name).depends_on}
            model, result = fit_one(name, seed, store, params, training, dependencies)
            fitted[name] = model
            if registry.get(name).reported:
                frame = predict_test(model, store)
                frame.to_parquet(cumulative / f".{name}.parquet", index=False)
                (cumulative / f".{name}.parquet").replace(cumulative / f"{name}.parquet")
            (cumulative / f".{name}.pt").write_bytes(fitting.checkpoint_bytes(model, result, training))
            (cumulative / f".{name}.pt").replace(model_file)
            seconds = time.perf_counter() - started
            # Beside the model in the checkpoint, so the driver can track it (and a resumed attempt keeps it).
            (cumulative / f"{name}.json").write_text(json.dumps({"fit_seconds": seconds}))
            loss = float(result.best_validation_loss)
            print(
                f"fit {name} seed {seed}: {seconds:.1f}s, best epoch {result.best_epoch}, val_loss {loss:.4f}"
            )
            if config.get("progress") is not None:
                config["progress"].add.remote(1)
            ray.train.report(
                {
                    "model": name,
                    "seed": seed,
                    "best_val_loss": loss,
                    "fit_seconds": seconds,
                    "restored": ",".join(restored),
                },
                checkpoint=ray.train.Checkpoint.from_directory(cumulative),
            )


def concurrent_trainers(cfg: ExperimentConfig) -> int:
    """How many seed trainers run at once: ``fit.max_concurrent_seeds``, or with 0 as many workers as the
    cluster's CPUs (and GPUs) hold, at least one — re-read before each start, so a cluster that grew is used.
    Not all at once: a trainer waiting for resources still runs its Ray Train controller, and on 2 cores the
    controllers of three waiting seeds slowed the two running ones by ~25 % (bench: the demo's fit stage)."""
    import ray

    if cfg.fit.max_concurrent_seeds:
        return cfg.fit.max_concurrent_seeds
    total = ray.cluster_resources()
    fits = int(total.get("CPU", 0.0) / cfg.fit.cpus_per_worker + 1e-9)
    if cfg.fit.gpus_per_worker:
        fits = min(fits, int(total.get("GPU", 0.0) / cfg.fit.gpus_per_worker + 1e-9))
    return max(fits, 1)


class _Counter:
    """A Ray actor the seed workers count their fitted models on (the driver reads it for the display)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, n: int) -> None:
        self.count += n

    def value(self) -> int:
        return self.count


def _drive(
    config: dict[str, Any], storage: str, run_name: str, cpus: float, gpus: float
) -> tuple[dict[str, tuple], list[str]]:
    """Build and run one seed's TorchTrainer; return ({model: (checkpoint bytes, predictions frame or None,
    fit seconds or None)}, the models it took from an interrupted earlier attempt's checkpoint instead of
    fitting them)."""
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": cpus}
    if gpus:
        resources["GPU"] = gpus
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=1, use_gpu=bool(gpus), resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name, storage_path=storage, checkpoint_config=CheckpointConfig(num_to_keep=1)
        ),
    )
    previous_handler = signal.getsignal(signal.SIGINT)  # as in tune.py: Ray may leave its own handler behind
    try:
        result = trainer.fit()
    finally:
        signal.signal(signal.SIGINT, previous_handler)
    out: dict[str, tuple] = {}
    restored = [n for n in str((result.metrics or {}).get("restored") or "").split(",") if n]
    if result.checkpoint is None:
        return out, restored
    with result.checkpoint.as_directory() as directory:
        for name in config["models"]:
            model_file = Path(directory) / f"{name}.pt"
            if not model_file.exists():
                continue
            frame_file = Path(directory) / f"{name}.parquet"
            info_file = Path(directory) / f"{name}.json"
            out[name] = (
                model_file.read_bytes(),
                pd.read_parquet(frame_file) if frame_file.exists() else None,
                json.loads(info_file.read_text()).get("fit_seconds") if info_file.exists() else None,
            )
    return out, restored


# --------------------------------------------------------------------------------------------------- attempts
def _filesystem(uri_or_path: str):
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri_or_path)


def discard_trainer(trainer_dir: str) -> bool:
    """Remove a seed's Ray Train folder (local path or URI); True when there was one."""
    import pyarrow.fs as pafs

    fs, path = _filesystem(trainer_dir)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return False
    fs.delete_dir(path)
    return True


def discard_unused_checkpoints(trainer_dir: str) -> list[str]:
    """Remove the ``checkpoint_*`` folders of a seed's Ray Train folder that its snapshot does not name (a
    restarted trainer resumes from the snapshot only); returns their names. An unreadable snapshot (cut short by
    a full disk: Ray writes it in place) would stop the restarted trainer at start-up, so the whole folder goes
    (returned as ``["*"]``): the seed's finished models are already in the run directory and are not refitted."""
    import pyarrow.fs as pafs

    fs, path = _filesystem(trainer_dir)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []
    used: set[str] = set()
    snapshot = f"{path}/checkpoint_manager_snapshot.json"
    if fs.get_file_info(snapshot).type == pafs.FileType.File:
        try:
            with fs.open_input_stream(snapshot) as stream:
                state = json.loads(stream.read())
        except ValueError:
            fs.delete_dir(path)
            return ["*"]
        results = [*state.get("checkpoint_results", []), state.get("latest_checkpoint_result") or {}]
        used = {r.get("checkpoint_dir_name") for r in results if r.get("checkpoint_dir_name")}
    removed = []
    for info in fs.get_file_info(pafs.FileSelector(path)):
        if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_"):
            if info.base_name not in used:
                fs.delete_dir(info.path)
                removed.append(info.base_name)
    return sorted(removed)


# --------------------------------------------------------------------------------------------------- stage
def run_fit(
    cfg: ExperimentConfig, run_dir: Path, best: dict[str, dict[str, Any]] | None = None, log=print
) -> int:
    """Fit every (model, seed) not done yet (all seeds concurrently); returns the number fitted now."""
    import ray

    run_dir = Path(run_dir)
    best = best or {}
    names = fit_models(cfg)
    training = fitting.trial_training(cfg.training, cfg.training.max_epochs, cfg.fit.cpus_per_worker)
    params = {name: dataclasses.asdict(final_params(cfg, best, name)) for name in names}
    plans = {}
    for seed in cfg.fit.seeds:
        missing = [n for n in names if not is_finished(run_dir, n, seed)]
        # A missing model needs its dependencies: refit them too unless their checkpoint exists.
        needed = {d for n in missing for d in registry.dependency_order([n]) if d != n}
        provided = {d for d in needed if d not in missing and checkpoint_path(run_dir, d, seed).exists()}
        missing = [n for n in names if n in missing or (n in needed and n not in provided)]
        if missing:
            plans[seed] = (missing, provided)
    storage = ray_storage_path(cfg.run_dir if "://" in cfg.run_dir else run_dir) + "/train"
    for seed in cfg.fit.seeds:  # the caller holds the run lock: no trainer of another run uses these folders
        trainer_dir = f"{storage}/{cfg.name}__seed{seed}"
        if seed in plans:
            if discard_unused_checkpoints(trainer_dir) == ["*"]:
                log(
                    f"  fit seed {seed}: Ray Train's snapshot there was cut short; starting that seed's trainer anew"
                )
        else:
            discard_trainer(trainer_dir)
    total = sum(len(m) for m, _ in plans.values())
    if not total:
        return 0
    from mmrec_ray.pipeline.ray_env import require_per_node

    require_per_node(
        "fit workers",
        {
            "CPU": (cfg.fit.cpus_per_worker, "fit.cpus_per_worker", "--set fit.cpus_per_worker=1"),
            "GPU": (cfg.fit.gpus_per_worker, "fit.gpus_per_worker", "--set fit.gpus_per_worker=0"),
        },
    )
    from mmrec_ray.pipeline.tracking import FitTracker

    tracker = FitTracker(cfg, run_dir, log)  # refuses a missing MLflow now, not after the fits
    data_ref = ray.put(PreparedData.load(run_dir / "prepared" / "tensors", mmap=False))
    drive = ray.remote(num_cpus=0)(_drive)
    log(f"  fit: {total} (model, seed) fits in {len(plans)} seed trainers")
    from mmrec_ray.pipeline import console

    # Each seed's worker counts the models it fits here, so the display moves with every model, not every seed.
    counter = ray.remote(num_cpus=0)(_Counter).remote()
    progress = console.Progress(total, "fit", "(model, seed) fits")
    in_flight = {}
    waiting = list(plans.items())

    def start(seed: int, missing: list[str], provided: list[str]) -> None:
        config = {
            "seed": seed,
            "models": missing,
            "params": {n: params[n] for n in missing},
            "training": dataclasses.asdict(training),
            "data": data_ref,
            "provided": {d: ray.put(checkpoint_path(run_dir, d, seed).read_bytes()) for d in provided},
            "progress": counter,
        }
        ref = drive.remote(
            config, storage, f"{cfg.name}__seed{seed}", cfg.fit.cpus_per_worker, cfg.fit.gpus_per_worker
        )
        in_flight[ref] = (seed, time.perf_counter())

    written = 0
    failures: dict[int, BaseException] = {}
    while waiting or in_flight:
        while waiting and len(in_flight) < concurrent_trainers(cfg):
            seed, (missing, provided) = waiting.pop(0)
            start(seed, missing, provided)
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=2.0)
        progress.update_to(ray.get(counter.value.remote()))
        if not ready:
            continue
        seed, started = in_flight.pop(ready[0])
        try:
            outputs, restored = ray.get(ready[0])
        except Exception as exc:  # the other seeds finish and are written; a re-run resumes this one
            failures[seed] = exc
            from mmrec_ray.errors import one_line

            log(f"  fit seed {seed}: FAILED after {time.perf_counter() - started:.0f}s: {one_line(exc)}")
            continue
        for name, (payload, frame, fit_seconds) in outputs.items():
            atomic_write(checkpoint_path(run_dir, name, seed), lambda p, b=payload: p.write_bytes(b))
            if frame is not None:
                write_test_predictions(predictions_path(run_dir, name, seed), frame)
            written += 1
            tracker.record(name, seed, payload, fit_seconds)
        if all(is_finished(run_dir, n, seed) for n in names):
            discard_trainer(f"{storage}/{cfg.name}__seed{seed}")
        resumed = (
            f" (resumed {', '.join(restored)} from an interrupted attempt's checkpoint)" if restored else ""
        )
        log(f"  fit seed {seed}: {len(outputs)} models in {time.perf_counter() - started:.0f}s{resumed}")
    progress.close()
    if failures:
        import traceback

        from mmrec_ray.errors import MmrecError, one_line

        traces = Path(run_dir) / "logs"
        traces.mkdir(parents=True, exist_ok=True)
        for failed, exc in failures.items():
            (traces / f"fit-seed{failed}.error.log").write_text("".join(traceback.format_exception(exc)))
        seed, first = next(iter(failures.items()))
        raise MmrecError(
            f"fit failed for seed(s) {sorted(failures)} ({written} other (model, seed) fits were written); "
            f"re-run to resume from the last checkpoint. First error (seed {seed}): {one_line(first)} "
            f"(full trace: {traces / f'fit-seed{seed}.error.log'})"
        ) from first
    return written
