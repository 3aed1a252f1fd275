"""Tune on multi-stage components: ASHA and selection see final-stage validation losses only.

A stage-1 loss (e.g. an MSE over embedding dimensions) and a stage-2 loss (a BCE over items) measure different
things, so a trial must never win, survive or be stopped on a comparison between them. The model here is a
test-only two-stage Recommender whose preliminary stage reports tiny losses and whose final stage large ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.config import load_config
from mmrec_ray.models import registry
from mmrec_ray.models.base import FitResult, Recommender
from mmrec_ray.pipeline import tune
from tests.pipeline.conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]
NAME = "tests.two_stage_tune_probe"  # unique: no real model may be shadowed
PRELIMINARY, FINAL = "pretrain", "final"
# dropout -> (loss of every preliminary epoch, loss of every final epoch). Listed in trial order.
LOSSES = {0.2: (0.001, 0.5), 0.4: (0.01, 0.9)}
PRELIMINARY_EPOCHS, FINAL_EPOCHS = 2, 2


class TwoStageProbe(Recommender):
    """Trains nothing: reports a fixed loss per stage and epoch, so ASHA's decisions are known in advance."""

    name = NAME
    reported = False
    tunable = ("dropout",)
    preliminary_stages = (PRELIMINARY,)

    def fit(self, store, dependencies, callback=None) -> FitResult:
        result = FitResult()
        losses = LOSSES[round(self.params.dropout, 3)]
        for stage, loss, epochs in zip((PRELIMINARY, FINAL), losses, (PRELIMINARY_EPOCHS, FINAL_EPOCHS)):
            result.history[stage] = []
            for epoch in range(1, epochs + 1):
                result.history[stage].append({"epoch": epoch, "train": loss, "val": loss})
                if callback is not None:
                    callback(stage, epoch, loss, loss)
        result.best_validation_loss, result.best_epoch = losses[1], 1
        return result

    def predict(self, store, indices):
        return np.full((len(indices), store.num_items), np.nan, np.float32)

    def state_dict(self):
        return {}

    def load_state_dict(self, state, store) -> None:
        pass


_real_trial = tune._trial


def _trial_with_probe(config, data=None, dependencies=None):
    """The Tune trainable for this test: runs in a Ray worker, which imports this module by name to unpickle
    it, so the probe gets registered there too before the real trial looks it up."""
    registry.register(TwoStageProbe)
    return _real_trial(config, data=data, dependencies=dependencies)


@pytest.fixture
def probe_registered(monkeypatch):
    registry.register(TwoStageProbe)
    monkeypatch.setattr(tune, "_trial", _trial_with_probe)
    yield
    registry._REGISTRY.pop(NAME, None)


@pytest.mark.slow
def test_a_trial_stopped_in_its_preliminary_stage_cannot_win(ray_local, probe_registered, tmp_path):
    """One trial after the other (grace 2, reduction 2). Counting all epochs in one counter, ASHA would compare
    the second trial's pretrain loss 0.01 with the first's 0.001 at epoch 2, stop it in pretrain, and selection
    would then pick it for its MSE-like 0.01. Counting final-stage epochs only, both reach the final stage,
    ASHA stops the second at its final epoch 2 (0.9 against 0.5), and the first wins on its final loss."""
    run_dir = tmp_path / "run"
    overrides = [f"run_dir={run_dir}", "name=tune_stages_test", f"models=[{NAME}]"]
    overrides += [f"tune.dropout={list(LOSSES)}", "tune.max_epochs=3", "tune.grace_period=2"]
    overrides += ["tune.reduction_factor=2", "tune.max_concurrent_trials=1"]
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    random_prepared(num_pes=60).save(run_dir / "prepared" / "tensors")

    best = tune.run_tune(cfg, run_dir, log=print)

    assert best[NAME]["dropout"] == pytest.approx(0.2)
    assert best[NAME]["val_loss"] == pytest.approx(0.5)
    trials = pd.read_csv(tune.tune_dir(run_dir) / "trials.csv").sort_values("dropout")
    # Every trial's loss is its best final-stage loss, and its epochs are final-stage epochs.
    assert trials["best_val_loss"].tolist() == pytest.approx([0.5, 0.9])
    assert trials["epochs"].tolist() == [FINAL_EPOCHS, FINAL_EPOCHS]
    assert trials["status"].tolist() == ["COMPLETED", "STOPPED_BY_ASHA"]


# --------------------------------------------------------------------------------------- without Ray
def test_preliminary_epochs_are_not_what_asha_compares():
    """The metrics a trial reports: preliminary epochs carry neither ``val_loss`` nor ``epoch`` (ASHA's
    metric and time attribute), and the epoch counter starts at the final stage."""
    reports = tune._StageReports(NAME, (PRELIMINARY,))
    first = reports.epoch(PRELIMINARY, 1, 0.3, 0.001)
    assert "val_loss" not in first and "epoch" not in first and "best_val_loss" not in first
    assert first["stage_val_loss"] == 0.001
    reports.epoch(PRELIMINARY, 2, 0.3, 0.002)
    final = [reports.epoch(FINAL, e, 0.9, loss) for e, loss in ((1, 0.7), (2, 0.6), (3, 0.8))]
    assert [r["epoch"] for r in final] == [1, 2, 3]
    assert [r["val_loss"] for r in final] == [0.7, 0.6, 0.8]
    assert [r["best_val_loss"] for r in final] == [0.7, 0.6, 0.6]
    done = reports.done(FitResult(best_validation_loss=0.001 + 0.6))  # e.g. a sum over stages: not compared
    assert done["val_loss"] == done["best_val_loss"] == 0.6 and done["epoch"] == 3


def test_a_model_without_epoch_reports_keeps_its_fit_result_loss():
    done = tune._StageReports("closed_form", ()).done(FitResult(best_validation_loss=0.25))
    assert done["val_loss"] == 0.25 and done["epoch"] == 1


def test_two_final_stages_are_a_declaration_error():
    """Only one stage may be the selection criterion: comparing across two would mix their losses again."""
    reports = tune._StageReports(NAME, ())
    reports.epoch(PRELIMINARY, 1, 0.3, 0.001)
    with pytest.raises(ValueError, match="preliminary_stages"):
        reports.epoch(FINAL, 1, 0.9, 0.7)


def test_best_loss_reads_final_stage_rows_only():
    """A trial stopped in its preliminary stage has no final-stage loss (NaN: selection skips it); otherwise
    the best of the final-stage rows, however small the preliminary losses were."""
    stopped = pd.DataFrame({"stage": [PRELIMINARY] * 2, "stage_val_loss": [0.002, 0.001]})
    assert math.isnan(tune._final_stage_best(stopped, (PRELIMINARY,)))
    # Results that carry a preliminary val_loss (as older runs did) are filtered by stage as well.
    mixed = pd.DataFrame({"stage": [PRELIMINARY, FINAL, FINAL], "val_loss": [0.001, 0.8, 0.6]})
    assert tune._final_stage_best(mixed, (PRELIMINARY,)) == pytest.approx(0.6)
    assert math.isnan(tune._final_stage_best(pd.DataFrame(), (PRELIMINARY,)))


def test_select_skips_trials_without_a_final_stage_loss(tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={tmp_path}"])
    trials = pd.DataFrame(
        {
            "model": ["conversation"] * 3,
            "trial": ["a", "b", "c"],
            "batch_size": [256] * 3,
            "units": [16] * 3,
            "dropout": [0.2, 0.3, 0.4],
            "num_anchors": [None] * 3,
            "best_val_loss": [0.9, math.nan, 0.5],  # b: stopped in a preliminary stage
            "epochs": [3, None, 3],
            "status": ["COMPLETED", "STOPPED_BY_ASHA", "COMPLETED"],
        }
    )
    chosen = tune._select(cfg, "conversation", trials)
    assert chosen["trial"] == "c" and chosen["dropout"] == pytest.approx(0.4)
