"""Experiment tracking (the ``tracking:`` section): off by default; with MLflow on, the tune stage logs every
trial and the fit stage every (model, seed) fit into the run's file store, read back here with the MLflow client;
with TensorBoard on, each final fit's per-epoch losses are event files under RUN_DIR/tensorboard/fit."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mmrec_ray.config import load_config
from mmrec_ray.errors import ConfigError
from mmrec_ray.pipeline import tracking, train
from mmrec_ray.training.runner import checkpoint_path
from tests.pipeline.conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]
ON = ["tracking.mlflow=true", "tracking.tensorboard=true"]


def _cfg(run_dir: Path, name: str, extra=()):
    overrides = [f"run_dir={run_dir}", f"name={name}", "models=[popular, conversation]", "fit.seeds=[0]"]
    overrides += ["tune.units=[16]", "tune.batch_size=[64]", "tune.dropout=[0.2, 0.4]"]
    overrides += ["tune.max_epochs=2", "tune.grace_period=2", "training.max_epochs=3", "training.patience=3"]
    return load_config(REPO / "configs" / "tiny.yaml", [*overrides, *extra])


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Tag -> [(step, value)] of the TensorBoard event files in ``folder`` (TFRecord framing, Event protos)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        raw = path.read_bytes()
        offset = 0
        while offset < len(raw):
            (length,) = struct.unpack("<Q", raw[offset : offset + 8])
            event = Event.FromString(raw[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tracking_is_off_by_default_and_then_adds_nothing(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={tmp_path}"])
    assert (cfg.tracking.mlflow, cfg.tracking.mlflow_uri, cfg.tracking.tensorboard) == (False, "", False)
    assert tracking.tune_callbacks(cfg, tmp_path, 0) == []
    tracking.FitTracker(cfg, tmp_path).record("popular", 0, b"not even a checkpoint")
    assert tracking.log_test_metrics(cfg, tmp_path) == 0
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "tensorboard").exists()
    assert tracking.mlflow_uri(cfg, tmp_path) == (tmp_path / "mlruns").resolve().as_uri()
    uri = load_config(REPO / "configs" / "tiny.yaml", ["tracking.mlflow_uri=http://mlflow:5000"])
    assert tracking.mlflow_uri(uri, tmp_path) == "http://mlflow:5000"
    with pytest.raises(ConfigError, match="tracking.tensorboard"):
        load_config(REPO / "configs" / "tiny.yaml", ["tracking.tensorboard=maybe"])


def test_a_missing_mlflow_is_refused_before_any_work_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an environment without the extra looks like
    cfg = _cfg(tmp_path, "nomlflow", ["tracking.mlflow=true"])
    for start in (
        lambda: tracking.FitTracker(cfg, tmp_path),
        lambda: tracking.tune_callbacks(cfg, tmp_path, 0),
    ):
        with pytest.raises(ConfigError, match=r"mmrec_ray\[mlflow\]") as caught:
            start()
        assert "\n" not in str(caught.value)


def test_the_tune_callback_still_opens_the_file_store_after_a_restore(tmp_path, monkeypatch):
    """Tuner.restore unpickles the callbacks of the interrupted run; tune_callbacks is not called again."""
    import ray.cloudpickle as cloudpickle

    cfg = _cfg(tmp_path, "restored", ["tracking.mlflow=true"])
    (callback,) = tracking.tune_callbacks(cfg, tmp_path, 1)
    restored = cloudpickle.loads(cloudpickle.dumps(callback))
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # a fresh driver process
    restored.setup()
    assert tracking.client(cfg, tmp_path).get_experiment_by_name("restored") is not None


@pytest.mark.slow
def test_fit_logs_every_model_and_seed_to_mlflow_and_tensorboard(ray_local, prepared_run):
    cfg = _cfg(prepared_run, "tracked_fit", ON)
    lines: list[str] = []
    assert train.run_fit(cfg, prepared_run, {}, log=lines.append) == 2
    assert not [line for line in lines if "tracking:" in line], lines  # no logging failure was swallowed

    client = tracking.client(cfg, prepared_run)
    experiment = client.get_experiment_by_name("tracked_fit")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'fit'")
    by_model = {run.data.tags["model"]: run for run in runs}
    assert sorted(by_model) == ["conversation", "popular"] and len(runs) == 2
    run = by_model["conversation"]
    checkpoint = torch.load(checkpoint_path(prepared_run, "conversation", 0), weights_only=True)
    result = checkpoint["fit_result"]
    assert run.info.run_name == "conversation__seed0" and run.info.status == "FINISHED"
    assert run.data.tags["seed"] == "0"
    assert run.data.params["units"] == str(checkpoint["params"]["units"])
    assert run.data.params["dropout"] == str(checkpoint["params"]["dropout"])
    assert run.data.metrics["best_val_loss"] == pytest.approx(result["best_validation_loss"])
    assert run.data.metrics["best_epoch"] == result["best_epoch"]
    assert run.data.metrics["fit_seconds"] > 0
    (epochs,) = result["history"].values()
    history = sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)
    assert [m.step for m in history] == [row["epoch"] for row in epochs]
    assert [m.value for m in history] == pytest.approx([row["val"] for row in epochs])
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == len(epochs)

    scalars = read_scalars(prepared_run / "tensorboard" / "fit" / "conversation__seed0")
    assert [step for step, _ in scalars["val_loss"]] == [row["epoch"] for row in epochs]
    assert [value for _, value in scalars["val_loss"]] == pytest.approx([row["val"] for row in epochs])
    assert [step for step, _ in scalars["train_loss"]] == [row["epoch"] for row in epochs]

    # After aggregate, each fit run gets its (model, seed)'s test metrics.
    from mmrec_ray import evaluate

    predictions = pd.concat(pd.read_parquet(p) for p in (prepared_run / "predictions").glob("*.parquet"))
    metrics = evaluate(predictions, prepared_run)
    (prepared_run / "results").mkdir()
    metrics.to_csv(prepared_run / "results" / "metrics.csv", index=False)
    assert tracking.log_test_metrics(cfg, prepared_run, log=lines.append) == 2
    logged = client.get_run(by_model["popular"].info.run_id).data.metrics
    expected = metrics[(metrics["model"] == "popular") & (metrics["subset"] == "union")]
    for row in expected.itertuples():
        assert logged[f"test/union/{row.metric}_at_{row.k}"] == pytest.approx(row.value)


@pytest.mark.slow
def test_tune_logs_every_trial_to_the_run_file_store(ray_local, tmp_path):
    """Needs tune.py's RunConfig to take ``tracking.tune_callbacks(cfg, run_dir, k)``."""
    from mmrec_ray.pipeline import tune

    run_dir = tmp_path / "run"
    random_prepared().save(run_dir / "prepared" / "tensors")
    cfg = _cfg(run_dir, "tracked_tune", ["tracking.mlflow=true", "models=[conversation]"])
    tune.run_tune(cfg, run_dir, log=print)

    client = tracking.client(cfg, run_dir)
    experiment = client.get_experiment_by_name("tracked_tune")
    assert experiment is not None, "the tune stage logged nothing (is tune_callbacks in its RunConfig?)"
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'tune'")
    assert len(runs) == 2 and {r.data.tags["level"] for r in runs} == {"0"}
    assert {r.data.params["trial/params/dropout"] for r in runs} == {"0.2", "0.4"}
    assert {r.data.params["trial/model"] for r in runs} == {"conversation"}
    trials = pd.read_csv(tune.tune_dir(run_dir) / "trials.csv")
    for run in runs:
        assert run.info.status == "FINISHED"
        losses = client.get_metric_history(run.info.run_id, "val_loss")
        assert len(losses) >= 2  # one per epoch (and the trial's final report)
        dropout = float(run.data.params["trial/params/dropout"])
        best = trials.loc[trials["dropout"] == dropout, "best_val_loss"].item()
        assert min(m.value for m in losses) == pytest.approx(best)
