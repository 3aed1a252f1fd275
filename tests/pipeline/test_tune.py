"""The Ray Tune stage on a small random PreparedData: every model gets a best config, every trial is in the
table, dependency levels run in order, and selection sees validation loss only (never the test split)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mmrec_ray.config import load_config
from mmrec_ray.pipeline import tune
from tests.pipeline.conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]
MODELS = ["popular", "conversation", "session", "knowledge_distillation"]
DROPOUTS = [0.2, 0.4]


def _cfg(run_dir: Path, search: str = "grid"):
    overrides = [f"run_dir={run_dir}", "name=tune_test", f"models=[{','.join(MODELS)}]"]
    overrides += [f"tune.search={search}", "tune.num_samples=2"]  # num_samples: random/optuna only
    if search != "grid":  # a range, which only the sampling searchers walk
        overrides += ["tune.spaces.conversation.learning_rate={loguniform: [1.0e-3, 1.0e-2]}"]
    overrides += [f"tune.dropout={DROPOUTS}", "tune.units=[16]", "tune.batch_size=[64]"]
    overrides += ["tune.max_epochs=3", "tune.grace_period=3", "training.patience=2"]
    return load_config(REPO / "configs" / "tiny.yaml", overrides)


def _scrambled_test_split(data):
    """The same data with the test PEs' targets and post-filter permuted: what selection must not notice."""
    rng = np.random.default_rng(7)
    test = np.flatnonzero(data.is_test)
    data.targets[test] = data.targets[rng.permutation(test)]
    data.targets[test] = np.roll(data.targets[test], 1, axis=1)
    data.post_filter[test] = data.post_filter[rng.permutation(test)]
    return data


def _tuned(run_dir: Path, data, search: str) -> dict:
    data.save(run_dir / "prepared" / "tensors")
    return tune.run_tune(_cfg(run_dir, search), run_dir, log=print)


@pytest.mark.slow
@pytest.mark.parametrize("search", ["grid", "random", "optuna"])
def test_tune_selects_on_validation_only_in_dependency_order(ray_local, tmp_path, search):
    cfg = _cfg(tmp_path / "a", search)
    levels = tune.dependency_levels(tune.tuned_models(cfg))
    assert levels == [["popular", "conversation", "session"], ["knowledge_distillation"]]

    best = _tuned(tmp_path / "a", random_prepared(), search)
    out = tune.tune_dir(tmp_path / "a")
    assert yaml.safe_load((out / "best_configs.yaml").read_text()) == best
    assert set(best) == set(MODELS)
    assert best["popular"]["source"].startswith("configured")  # nothing to tune

    trials = pd.read_csv(out / "trials.csv")
    if search == "grid":
        expected = {(m, d) for m in MODELS if m != "popular" for d in DROPOUTS}
        assert set(zip(trials["model"], trials["dropout"])) == expected and len(trials) == len(expected)
    else:  # num_samples trials per model, drawn from the same lists
        expected = {f"{m}_{i:03d}" for m in MODELS if m != "popular" for i in range(2)}
        assert set(trials["trial"]) == expected and len(trials) == len(expected)
        assert set(trials["dropout"]) <= set(DROPOUTS)
    for name in ("conversation", "session", "knowledge_distillation"):
        rows = trials[trials["model"] == name]
        winner = rows.loc[rows["best_val_loss"].idxmin()]
        assert best[name]["dropout"] == pytest.approx(winner["dropout"])
        assert best[name]["val_loss"] == pytest.approx(winner["best_val_loss"])
        assert best[name]["units"] == 16 and best[name]["batch_size"] == 64

    # Level 0 finished (and its winners were fitted as teachers) before level 1 started.
    level0 = (out / "levels" / "level0.parquet").stat().st_mtime
    for teacher in ("conversation", "session"):
        payload = (out / "dependencies" / f"{teacher}.pt").read_bytes()
        header = torch.load(io.BytesIO(payload), weights_only=True)
        assert header["params"]["dropout"] == pytest.approx(best[teacher]["dropout"])
        assert level0 <= (out / "dependencies" / f"{teacher}.pt").stat().st_mtime
        assert (out / "dependencies" / f"{teacher}.pt").stat().st_mtime <= (
            out / "levels" / "level1.parquet"
        ).stat().st_mtime

    # The test split is never touched: scrambling its targets changes no selection and no validation loss.
    scrambled = _tuned(tmp_path / "b", _scrambled_test_split(random_prepared()), search)
    # ... and a run with the same seed proposes the same trials.
    again = pd.read_csv(tune.tune_dir(tmp_path / "b") / "trials.csv")
    columns = ["model", "trial", "batch_size", "units", "dropout"]
    columns += ["learning_rate"] if search != "grid" else []
    assert again[columns].equals(trials[columns])
    for name in MODELS:
        for key in ("batch_size", "units", "dropout", "num_anchors"):
            assert scrambled[name][key] == best[name][key], (name, key)
        if best[name]["val_loss"] is not None:
            assert scrambled[name]["val_loss"] == pytest.approx(best[name]["val_loss"], rel=1e-6)

    # A finished stage is not redone.
    assert tune.is_done(tmp_path / "a")
