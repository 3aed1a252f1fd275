"""A tune level interrupted (kill -9, Ctrl-C) and resumed selects what the uninterrupted sweep selects.

``Tuner.restore`` brings back trials but not the scheduler (Ray issue #30838): a restored ASHA starts with empty
rungs and lets through a trial that the uninterrupted sweep stopped. The probe model here trains nothing; it
reports fixed losses, one trial after another, so every ASHA decision is known in advance:

    trial (dropout)   loss at epoch e     uninterrupted (grace 1, reduction 2, 4 epochs)
    0.1               0.5 - 0.01 e        completes
    0.2               0.9 - 0.01 e        stopped at epoch 1 (0.89 against the rung's 0.49)
    0.3               0.8 - 0.01 e        stopped at epoch 1 (0.79 against the median of 0.49 and 0.89)
    0.4               0.3 - 0.01 e        completes, best

The sweep is killed when the third trial starts, before its first report: with empty rungs after the restore
it would have nothing to be compared with and would complete.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mmrec_ray.models import registry
from mmrec_ray.models.base import FitResult, Recommender
from mmrec_ray.pipeline import tune
from tests.pipeline.conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]
NAME = "tests.asha_resume_probe"  # unique: no real model may be shadowed
BASE_LOSS = {0.1: 0.5, 0.2: 0.9, 0.3: 0.8, 0.4: 0.3}  # in trial order
EPOCHS = 4
MARKERS = "MMREC_TEST_PROBE_MARKERS"  # where each trial leaves a file when it starts


class AshaResumeProbe(Recommender):
    name = NAME
    reported = False
    tunable = ("dropout",)

    def fit(self, store, dependencies, callback=None) -> FitResult:
        dropout = round(self.params.dropout, 3)
        Path(os.environ[MARKERS], f"start_{dropout}").touch()
        time.sleep(1.5)  # room for the test to kill the sweep before this trial's first report
        result = FitResult()
        result.history["final"] = []
        for epoch in range(1, EPOCHS + 1):
            loss = BASE_LOSS[dropout] - 0.01 * epoch
            result.history["final"].append({"epoch": epoch, "train": loss, "val": loss})
            if callback is not None:
                callback("final", epoch, loss, loss)
            time.sleep(0.2)
        result.best_validation_loss, result.best_epoch = BASE_LOSS[dropout] - 0.01 * EPOCHS, EPOCHS
        return result

    def predict(self, store, indices):
        return np.full((len(indices), store.num_items), np.nan, np.float32)

    def state_dict(self):
        return {}

    def load_state_dict(self, state, store) -> None:
        pass


_real_trial = tune._trial


def _trial_with_probe(config, data=None, dependencies=None):
    """The trainable: the Ray worker imports this module by name to unpickle it, registering the probe there."""
    registry.register(AshaResumeProbe)
    return _real_trial(config, data=data, dependencies=dependencies)


def sweep(run_dir: str) -> None:
    """One tune stage on the probe, as `mmrec run` runs it (entry point of the subprocesses below)."""
    from mmrec_ray.config import load_config
    from mmrec_ray.pipeline import ray_env

    registry.register(AshaResumeProbe)
    tune._trial = _trial_with_probe
    overrides = [
        f"run_dir={run_dir}",
        "name=asha_resume",
        f"models=[{NAME}]",
        f"tune.dropout={list(BASE_LOSS)}",
    ]
    overrides += [f"tune.max_epochs={EPOCHS}", "tune.grace_period=1", "tune.reduction_factor=2"]
    overrides += ["tune.max_concurrent_trials=1"]
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    tensors = Path(run_dir) / "prepared" / "tensors"
    if not tensors.exists():
        random_prepared(num_pes=60).save(tensors)
    started = ray_env.init_ray("local", num_cpus=2, include_dashboard=False)
    try:
        tune.run_tune(cfg, Path(run_dir), log=print)
    finally:
        ray_env.shutdown_ray(started)


def _start(run_dir: Path, markers: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0", **{MARKERS: str(markers)})
    markers.mkdir(parents=True, exist_ok=True)
    code = f"from tests.pipeline.test_tune_resume import sweep; sweep({str(run_dir)!r})"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: kill -9 takes Ray's processes with it
    )


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]


def _outcome(run_dir: Path) -> tuple[list[dict], dict]:
    trials = pd.read_csv(tune.tune_dir(run_dir) / "trials.csv").sort_values("dropout")
    columns = ["trial", "dropout", "epochs", "status", "best_val_loss"]
    best = yaml.safe_load((tune.tune_dir(run_dir) / "best_configs.yaml").read_text())
    return trials[columns].round(6).to_dict("records"), best


@pytest.mark.slow
def test_a_sweep_killed_mid_level_resumes_to_the_same_decisions(tmp_path):
    uninterrupted = tmp_path / "uninterrupted"
    _finish(_start(uninterrupted, tmp_path / "markers_a"))
    expected_trials, expected_best = _outcome(uninterrupted)
    assert [t["status"] for t in expected_trials] == [
        "COMPLETED",
        "STOPPED_BY_ASHA",
        "STOPPED_BY_ASHA",
        "COMPLETED",
    ]
    assert expected_best[NAME]["dropout"] == pytest.approx(0.4)

    interrupted, markers = tmp_path / "interrupted", tmp_path / "markers_b"
    process = _start(interrupted, markers)
    try:
        deadline = time.monotonic() + 300
        while not (markers / "start_0.3").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the sweep ended before the third trial started"
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not (tune.tune_dir(interrupted) / "trials.csv").exists()

    _finish(_start(interrupted, markers))
    assert _outcome(interrupted) == (expected_trials, expected_best)


@pytest.mark.slow
def test_ctrl_c_in_the_middle_of_tune_interrupts_the_run(tmp_path):
    """Tune's SIGINT handler ends ``fit()`` quietly with trials unfinished; the stage then used to read their
    missing results (a TypeError). It must end the run with exit 130 and the resume hint, writing no results."""
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "mmrec_ray.cli", "run", "--config", str(REPO / "configs" / "tiny.yaml")]
    for override in (
        f"run_dir={run_dir}",
        "analyses.enabled=false",
        "tune.max_epochs=200",
        "tune.grace_period=200",
    ):
        command += ["--set", override]
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 600
        trial_dirs = run_dir / "ray" / "tune"
        while time.monotonic() < deadline and process.poll() is None:
            if any(trial_dirs.glob("*/conversation_*/progress.csv")):  # a trial is reporting epochs
                break
            time.sleep(0.5)
        assert process.poll() is None, "the run ended before tune was under way"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr and "re-run to resume" in stderr
    assert "Traceback" not in stderr
    assert not (tune.tune_dir(run_dir) / "best_configs.yaml").exists()


def test_a_partial_searcher_state_file_of_a_killed_run_is_removed_before_the_restore(tmp_path):
    experiment = tmp_path / "exp"
    experiment.mkdir()
    partial = experiment / ".6c330467-ce97-4555-aae1-3af09d9f2016-tmp-basic-variant-state-2026.json"
    partial.write_text("{")
    kept = experiment / "basic-variant-state-2026.json"
    kept.write_text("{}")
    tune._discard_partial_state_files(str(experiment))
    assert not partial.exists() and kept.exists()
