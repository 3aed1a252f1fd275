"""The local runner: dependency order and reuse, predictions format, checkpoints, and the `mmrec fit` CLI."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest
import torch
import yaml

from mmrec_ray.cli import main
from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import registry
from mmrec_ray.training import runner
from tests.models.conftest import make_prepared, small_params

TRAINING = TrainingConfig(max_epochs=2, device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def data():
    return make_prepared()


def params_for(*names):
    return {n: small_params(n) for n in registry.dependency_order(list(names))}


def test_dependencies_are_fitted_once_per_seed_and_reused(data, monkeypatch):
    fits = Counter()
    for name in ("conversation", "session", "late_fusion"):
        cls = registry.get(name)
        original = cls.fit

        def counting(self, store, dependencies, callback=None, _original=original):
            fits[(self.name, self.seed)] += 1
            return _original(self, store, dependencies, callback)

        monkeypatch.setattr(cls, "fit", counting)
    fitted = runner.fit_models(
        data, ["late_fusion", "conversation"], [0, 1], params_for("late_fusion"), TRAINING, device="cpu"
    )
    assert fits == {(n, s): 1 for n in ("conversation", "session", "late_fusion") for s in (0, 1)}
    for seed in (0, 1):
        fusion = fitted[("late_fusion", seed)][0]
        assert fusion.parts["conversation"] is fitted[("conversation", seed)][0]
        assert fusion.parts["session"].seed == seed


def test_provided_models_are_used_instead_of_fitting(data):
    first = runner.fit_models(
        data, ["conversation", "session"], [0], params_for("late_fusion"), TRAINING, device="cpu"
    )
    provided = {key: value[0] for key, value in first.items()}
    again = runner.fit_models(
        data, ["late_fusion"], [0], params_for("late_fusion"), TRAINING, provided=provided
    )
    assert again[("late_fusion", 0)][0].parts["session"] is provided[("session", 0)]


def test_fit_one_refuses_missing_or_mismatched_dependencies(data):
    store = FeatureStore(data, "cpu")
    with pytest.raises(ValueError, match="depends on"):
        runner.fit_one("late_fusion", 0, store, small_params("late_fusion"), TRAINING, {})
    fitted = runner.fit_models(
        data, ["conversation", "session"], [1], params_for("late_fusion"), TRAINING, store=store
    )
    with pytest.raises(ValueError, match="another seed"):
        runner.fit_one(
            "late_fusion",
            0,
            store,
            small_params("late_fusion"),
            TRAINING,
            {k[0]: v[0] for k, v in fitted.items()},
        )


def test_predict_test_long_format_and_checkpoint_round_trip(data, tmp_path):
    store = FeatureStore(data, "cpu")
    fitted = runner.fit_models(data, ["conversation"], [2], params_for("conversation"), TRAINING, store=store)
    model, result = fitted[("conversation", 2)]
    frame = runner.predict_test(model, store, data)
    assert list(frame.columns) == ["model", "seed", "purchase_event_id", "item_id", "score"]
    test_ids = data.purchase_event_id[data.test_indices()]
    served = test_ids[data.has_conversation[data.test_indices()]]
    assert set(frame["purchase_event_id"]) == set(served.tolist())
    assert len(frame) == len(served) * data.num_items and frame["score"].notna().all()
    assert (frame["model"] == "conversation").all() and (frame["seed"] == 2).all()

    path = runner.save_checkpoint(tmp_path, model, result, TRAINING)
    assert path == tmp_path / "checkpoints" / "conversation" / "seed=2.pt"
    payload = torch.load(path, weights_only=True)
    assert payload["params"]["units"] == 8 and payload["fit_result"]["best_epoch"] == result.best_epoch
    restored, restored_result = runner.load_checkpoint(tmp_path, "conversation", 2, store)
    assert restored.params == model.params and restored_result.history == result.history
    pd.testing.assert_frame_equal(runner.predict_test(restored, store, data), frame)


def test_fit_cli_writes_predictions_checkpoints_config_and_resumes(tmp_path, capsys):
    data = make_prepared(num_pes=120)
    data.save(tmp_path / "prepared" / "tensors")
    argv = ["fit", "--run-dir", str(tmp_path), "--model", "late_fusion,popular", "--seeds", "0,1"]
    argv += ["--set", "units=8", "--set", "training.max_epochs=2", "--set", "session.batch_size=16"]
    assert main(argv) == 0
    for name in ("late_fusion", "popular"):
        for seed in (0, 1):
            frame = pd.read_parquet(tmp_path / "predictions" / f"{name}__seed{seed}.parquet")
            assert len(frame) == data.is_test.sum() * data.num_items
            assert (tmp_path / "checkpoints" / name / f"seed={seed}.pt").exists()
    assert (tmp_path / "checkpoints" / "conversation" / "seed=0.pt").exists()  # dependency checkpointed
    config = yaml.safe_load((tmp_path / "fit" / "late_fusion" / "config.yaml").read_text())
    assert config["params"]["session"]["units"] == 8 and config["params"]["session"]["batch_size"] == 16
    assert config["params"]["conversation"]["batch_size"] == 512  # Table 2 where not overridden
    assert config["training"]["max_epochs"] == 2 and config["seeds"] == [0, 1]
    assert "torch" in config["environment"]

    # resume: nothing is refitted or rewritten
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "predictions").iterdir()}
    capsys.readouterr()
    assert main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "predictions").iterdir()} == written

    # a missing prediction is redone from the checkpoints: the dependency is loaded, not refitted
    lost = tmp_path / "predictions" / "late_fusion__seed1.parquet"
    before = pd.read_parquet(lost)
    lost.unlink()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "fitted conversation" not in out and "fitted session" not in out
    pd.testing.assert_frame_equal(pd.read_parquet(lost), before)


def test_fit_cli_rejects_unknown_model_and_keys(tmp_path, capsys):
    make_prepared(num_pes=60).save(tmp_path / "prepared" / "tensors")
    assert main(["fit", "--run-dir", str(tmp_path), "--model", "nope"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["fit", "--run-dir", str(tmp_path), "--model", "popular", "--set", "training.epochs=3"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_fit_cli_refuses_a_checkpoint_trained_with_other_params(tmp_path, capsys):
    make_prepared(num_pes=80).save(tmp_path / "prepared" / "tensors")
    base = [
        "fit",
        "--run-dir",
        str(tmp_path),
        "--model",
        "conversation",
        "--seeds",
        "0",
        "--set",
        "training.max_epochs=1",
    ]
    assert main([*base, "--set", "units=8"]) == 0
    (tmp_path / "predictions" / "conversation__seed0.parquet").unlink()
    assert main([*base, "--set", "units=16"]) == 2
    assert "was trained with" in capsys.readouterr().err
