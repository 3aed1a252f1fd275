"""The README's "Your own model" example, run: examples/my_model.py is registered by loading the file, declares its
display name, a new hyperparameter (``depth``) and its search space; Tune searches that space (and, from the config
alone, the learning rate) on tiny data, and the final fit uses the best config."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest
from torch import nn

from mmrec_ray.config import load_config
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import registry
from mmrec_ray.pipeline import fitting, train, tune
from mmrec_ray.training.runner import checkpoint_payload, fit_one, restore_checkpoint
from tests.pipeline.conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "my_model.py"
NAME = "my_model"


def load_example():
    """Load examples/my_model.py as a module (its @register runs once per process) and make sure it is registered
    (a test before may have removed it)."""
    module = sys.modules.get("mmrec_example_my_model")
    if module is None:
        spec = importlib.util.spec_from_file_location("mmrec_example_my_model", EXAMPLE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    registry.register(module.MyModel)
    return module


_real_trial = tune._trial


def _trial_with_example(config, data=None, dependencies=None):
    """The Tune trainable: a Ray worker imports this module by name to unpickle it, then loads the example here.
    (In a real run the file sits in mmrec_ray/models/, which every process imports.)"""
    load_example()
    return _real_trial(config, data=data, dependencies=dependencies)


@pytest.fixture
def example(monkeypatch):
    module = load_example()
    monkeypatch.setattr(tune, "_trial", _trial_with_example)
    yield module
    registry._REGISTRY.pop(NAME, None)


def test_the_example_declares_its_name_hyperparameter_and_space(example):
    from mmrec_ray.commands.models import rows
    from mmrec_ray.evaluation.tables import display_name

    cls = registry.get(NAME)
    assert display_name(NAME) == "Deep Conversation"
    assert cls.hyperparameters == {"learning_rate": None, "depth": 1}
    assert cls.tunable == ("units", "dropout", "depth")
    assert (NAME, "Deep Conversation", "conversation", "-", "units, dropout, depth") in rows()
    cfg = load_config(None, [f"models=[{NAME}]", f"hyperparameters.{NAME}.extra.depth=3"])
    assert fitting.base_params(cfg, NAME).depth == 3
    assert len(tune.grid(load_config(None, [f"models=[{NAME}]"]), NAME)) == 2 * 2 * 3


def test_the_readme_shows_this_very_file():
    readme = (REPO / "README.md").read_text()
    assert "## Your own model" in readme and f"```python\n{EXAMPLE.read_text()}```" in readme


@pytest.mark.slow
def test_the_example_is_tuned_over_its_own_space_and_fitted_with_the_best_config(
    ray_local, example, tmp_path
):
    run_dir = tmp_path / "run"
    data = random_prepared()
    data.save(run_dir / "prepared" / "tensors")
    overrides = [f"run_dir={run_dir}", "name=own_model", f"models=[{NAME}]", "tune.search=optuna"]
    overrides += ["tune.num_samples=3", "tune.max_epochs=2", "training.max_epochs=2"]
    overrides += [
        "tune.units=null",
        "tune.dropout=null",
    ]  # tiny.yaml's shorthands would replace the example's lists
    overrides += [f"tune.spaces.{NAME}.learning_rate={{loguniform: [1.0e-3, 3.0e-2]}}"]
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)

    best = tune.run_tune(cfg, run_dir, log=print)

    trials = pd.read_csv(tune.tune_dir(run_dir) / "trials.csv")
    assert len(trials) == 3 and set(trials["model"]) == {NAME}
    assert set(trials["depth"]) <= {1, 2, 3} and set(trials["units"]) <= {32, 64}
    assert trials["learning_rate"].between(1e-3, 3e-2).all()
    chosen = best[NAME]
    winner = trials.loc[trials["best_val_loss"].idxmin()]
    assert chosen["trial"] == winner["trial"] and chosen["extra"]["depth"] == winner["depth"]

    # The final fit (here in-process; `mmrec fit` runs the same fit_one in Ray Train) uses the best config.
    params = train.final_params(cfg, best, NAME)
    store = FeatureStore(data, device="cpu")
    model, result = fit_one(NAME, 0, store, params, fitting.trial_training(cfg.training))
    linear = [m for m in model.network.body if isinstance(m, nn.Linear)]
    assert len(linear) == winner["depth"] and linear[0].out_features == winner["units"]
    assert model.training.learning_rate == pytest.approx(winner["learning_rate"])
    restored, _ = restore_checkpoint(checkpoint_payload(model, result), store)
    assert restored.params == model.params and restored.params.depth == winner["depth"]
