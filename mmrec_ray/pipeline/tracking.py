"""Optional experiment tracking (the ``tracking:`` config section): MLflow and TensorBoard, both off by default.

* MLflow (``tracking.mlflow``): every Tune trial is a run (Ray's ``MLflowLoggerCallback``: the trial's config as
  params, every reported epoch as metrics), every final (model, seed) fit is a run logged from the driver (its
  parameters, ``best_val_loss``, ``best_epoch``, ``fit_seconds`` and per-epoch ``train_loss`` / ``val_loss``),
  and after ``aggregate`` the fit runs get their test metrics (``test/{subset}/{hr|map}_at_{k}``). The store is
  ``tracking.mlflow_uri``, by default the file store ``RUN_DIR/mlruns`` (no server); the experiment is named
  after the run (``name``). Tags ``stage`` (tune | fit), ``model`` and ``seed`` tell the runs apart.
* TensorBoard (``tracking.tensorboard``): the per-epoch train/val loss of each final fit under
  ``RUN_DIR/tensorboard/fit/{model}__seed{s}``. Tune writes its trials' event files itself, under
  ``RUN_DIR/ray/tune``.

Only what a run actually does is logged: stages skipped because their outputs exist log nothing again. A
tracking failure after the outputs are written is one warning line, never a failed stage: the results are in
the run directory either way. What can be checked before any work (MLflow installed) is checked up front.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmrec_ray.config import ExperimentConfig
from mmrec_ray.errors import ConfigError, one_line

MLRUNS = "mlruns"
TENSORBOARD_FIT = Path("tensorboard") / "fit"
INSTALL_HINT = "pip install 'mmrec_ray[mlflow]' (or mlflow-skinny), or --set tracking.mlflow=false"


# --------------------------------------------------------------------------------------------------- MLflow
def mlflow_uri(cfg: ExperimentConfig, run_dir: str | Path) -> str:
    """The configured tracking URI, else the run's own file store: tracking works with no server to run."""
    if cfg.tracking.mlflow_uri:
        return cfg.tracking.mlflow_uri
    return (Path(run_dir).resolve() / MLRUNS).as_uri()


def _is_file_store(uri: str) -> bool:
    return uri.startswith("file:") or "://" not in uri


def _mlflow(uri: str):
    """Import MLflow for ``uri``; a missing install is a one-line ConfigError naming the fix."""
    if _is_file_store(uri):
        # MLflow 3 refuses its file store (now in maintenance mode) unless this opt-out is set; a run's local
        # store is the point of the default, and a value the user set is left as it is.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    try:
        import mlflow
    except ImportError:
        raise ConfigError(f"tracking.mlflow is true but MLflow is not installed: {INSTALL_HINT}") from None
    return mlflow


def client(cfg: ExperimentConfig, run_dir: str | Path):
    """An ``MlflowClient`` of the run's tracking store (what the tests and notebooks read runs back with)."""
    uri = mlflow_uri(cfg, run_dir)
    return _mlflow(uri).tracking.MlflowClient(tracking_uri=uri)


def experiment_id(mlflow_client, name: str) -> str:
    found = mlflow_client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else mlflow_client.create_experiment(name)


def tune_callbacks(cfg: ExperimentConfig, run_dir: str | Path, level: int) -> list:
    """The Ray Tune callbacks of one tune level: MLflow's logger when ``tracking.mlflow`` is on, else none."""
    if not cfg.tracking.mlflow:
        return []
    uri = mlflow_uri(cfg, run_dir)
    _mlflow(uri)
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    class RunStoreMLflowLoggerCallback(MLflowLoggerCallback):
        def setup(self, *args, **kwargs):
            # Tuner.restore brings this callback back from the experiment's pickle without calling
            # tune_callbacks again: the file-store opt-out must come with it.
            _mlflow(self.tracking_uri)
            super().setup(*args, **kwargs)

    return [
        RunStoreMLflowLoggerCallback(
            tracking_uri=uri,
            experiment_name=cfg.name,
            tags={"stage": "tune", "level": str(level), "run_dir": str(run_dir)},
        )
    ]


def _metric_keys(name: str, history: dict[str, list[dict[str, float]]]) -> dict[str, str]:
    """Stage -> metric prefix. The final stage's curves are plain ``train_loss`` / ``val_loss``, so that every
    model's curves compare under one name; a preliminary stage (a pre-trained encoder's MSE) is prefixed."""
    from mmrec_ray.models import registry

    preliminary = set(registry.get(name).preliminary_stages)
    stages = list(history)
    final = [s for s in stages if s not in preliminary]
    last = final[-1] if final else (stages[-1] if stages else None)
    return {s: "" if s == last else f"{s}/" for s in stages}


class FitTracker:
    """Logs each final (model, seed) fit from the driver, once its checkpoint is in the run directory."""

    def __init__(self, cfg: ExperimentConfig, run_dir: str | Path, log: Callable[[str], None] = print):
        self.cfg, self.run_dir, self.log = cfg, Path(run_dir), log
        self.enabled = cfg.tracking.mlflow or cfg.tracking.tensorboard
        if cfg.tracking.mlflow:
            _mlflow(mlflow_uri(cfg, run_dir))  # before hours of fitting, not after

    def record(self, name: str, seed: int, payload: bytes, fit_seconds: float | None = None) -> None:
        """``payload``: the checkpoint bytes the fit wrote (params, ``fit_result`` with its history)."""
        if not self.enabled:
            return
        try:
            from mmrec_ray.training.runner import read_checkpoint

            checkpoint = read_checkpoint(payload, f"{name} seed {seed}")
            if self.cfg.tracking.mlflow:
                log_fit_mlflow(self.cfg, self.run_dir, name, seed, checkpoint, fit_seconds)
            if self.cfg.tracking.tensorboard:
                log_fit_tensorboard(self.run_dir, name, seed, checkpoint)
        except Exception as exc:  # the fit's outputs are written: a tracking hiccup must not fail the stage
            self.log(f"  tracking: {name} seed {seed} not logged: {one_line(exc)}")


def _log_metrics(mlflow_client, run_id: str, metrics: list) -> None:
    # MLflow takes at most 1000 metrics per batch; a long multi-stage history has more.
    for start in range(0, len(metrics), 1000):
        mlflow_client.log_batch(run_id, metrics=metrics[start : start + 1000], synchronous=True)


def log_fit_mlflow(
    cfg: ExperimentConfig,
    run_dir: str | Path,
    name: str,
    seed: int,
    checkpoint: dict[str, Any],
    fit_seconds: float | None = None,
) -> str:
    """One MLflow run for one final fit; returns its run id."""
    from mlflow.entities import Metric, Param

    mlflow_client = client(cfg, run_dir)
    run = mlflow_client.create_run(
        experiment_id(mlflow_client, cfg.name),
        run_name=f"{name}__seed{seed}",
        tags={"stage": "fit", "model": name, "seed": str(seed), "run_dir": str(run_dir)},
    )
    result = checkpoint.get("fit_result") or {}
    training = checkpoint.get("training") or {}
    params = {"model": name, "seed": seed, **(checkpoint.get("params") or {})}
    params.update({k: training[k] for k in ("max_epochs", "patience", "learning_rate") if k in training})
    now = int(time.time() * 1000)
    metrics = [Metric("best_epoch", float(result.get("best_epoch", -1)), now, 0)]
    for key, value in (("best_val_loss", result.get("best_validation_loss")), ("fit_seconds", fit_seconds)):
        if value is not None and math.isfinite(float(value)):
            metrics.append(Metric(key, float(value), now, 0))
    history = result.get("history") or {}
    for stage, prefix in _metric_keys(name, history).items():
        for row in history[stage]:
            for column, key in (("train", "train_loss"), ("val", "val_loss")):
                if row.get(column) is not None and math.isfinite(float(row[column])):
                    metrics.append(Metric(f"{prefix}{key}", float(row[column]), now, int(row["epoch"])))
    run_id = run.info.run_id
    status = "FAILED"  # a run left RUNNING would read as a fit still in progress
    try:
        mlflow_client.log_batch(
            run_id, params=[Param(k, str(v)) for k, v in params.items()], synchronous=True
        )
        _log_metrics(mlflow_client, run_id, metrics)
        status = "FINISHED"
    finally:
        mlflow_client.set_terminated(run_id, status)
    return run_id


def log_test_metrics(cfg: ExperimentConfig, run_dir: str | Path, log: Callable[[str], None] = print) -> int:
    """After ``aggregate``: each (model, seed)'s test metrics (``RUN_DIR/results/metrics.csv``) onto its latest
    fit run; returns how many runs got them. A (model, seed) whose fit was not tracked is skipped."""
    if not cfg.tracking.mlflow:
        return 0
    path = Path(run_dir) / "results" / "metrics.csv"
    if not path.exists():
        return 0
    try:
        import pandas as pd
        from mlflow.entities import Metric

        mlflow_client = client(cfg, run_dir)
        found = mlflow_client.get_experiment_by_name(cfg.name)
        if found is None:
            return 0
        metrics = pd.read_csv(path)
        logged = 0
        for (model, seed), rows in metrics.groupby(["model", "seed"], sort=True):
            runs = mlflow_client.search_runs(
                [found.experiment_id],
                f"tags.stage = 'fit' and tags.model = '{model}' and tags.seed = '{int(seed)}'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
            if not runs:
                continue
            values = [
                Metric(f"test/{r.subset}/{r.metric}_at_{int(r.k)}", float(r.value), 0, 0)
                for r in rows.itertuples()
            ]
            _log_metrics(mlflow_client, runs[0].info.run_id, values)
            logged += 1
        return logged
    except Exception as exc:  # results are written; the store missing them is a warning, not a failure
        log(f"  tracking: test metrics not logged: {one_line(exc)}")
        return 0


# --------------------------------------------------------------------------------------------------- TensorBoard
def tensorboard_dir(run_dir: str | Path, name: str, seed: int) -> Path:
    return Path(run_dir) / TENSORBOARD_FIT / f"{name}__seed{seed}"


def log_fit_tensorboard(run_dir: str | Path, name: str, seed: int, checkpoint: dict[str, Any]) -> Path:
    """The fit's per-epoch losses as TensorBoard scalars; returns the folder written."""
    # tensorboardX, not torch.utils.tensorboard: the same writer API, and Ray Tune already requires it, whereas
    # torch's needs the whole `tensorboard` package installed.
    from tensorboardX import SummaryWriter

    folder = tensorboard_dir(run_dir, name, seed)
    # A fit that runs again replaces the checkpoint; curves of the replaced fit beside it would be misread.
    shutil.rmtree(folder, ignore_errors=True)
    history = (checkpoint.get("fit_result") or {}).get("history") or {}
    writer = SummaryWriter(logdir=str(folder))
    try:
        for stage, prefix in _metric_keys(name, history).items():
            for row in history[stage]:
                for column, key in (("train", "train_loss"), ("val", "val_loss")):
                    if row.get(column) is not None:
                        writer.add_scalar(f"{prefix}{key}", float(row[column]), int(row["epoch"]))
    finally:
        writer.close()
    return folder
