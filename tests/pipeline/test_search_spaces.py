"""Search spaces declared by the models (issue #15): what a model declares reaches Ray Tune as declared, a config
changes it per model, each searcher proposes the same trials for the same seed, and a hyperparameter that only a
model file declares is swept, recorded, selected and handed to the final fit with no other edit."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.config import (
    ExperimentConfig,
    ModelParams,
    TrainingConfig,
    apply_overrides,
    from_dict,
    load_config,
    load_yaml,
)
from mmrec_ray.errors import ConfigError
from mmrec_ray.models import registry
from mmrec_ray.models.base import PAPER_GRID, FitResult, Recommender
from mmrec_ray.models.space import choice, grid, loguniform, randint, uniform
from mmrec_ray.pipeline import fitting, train, tune
from tests.pipeline.conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]
SPACE_PROBE = "tests.space_probe"
SWEEP_PROBE = "tests.sweep_probe"  # unique names: no real model may be shadowed


class _NoModel(Recommender):
    """Trains nothing; predicts nothing (NaN rows)."""

    reported = False

    def fit(self, store, dependencies, callback=None) -> FitResult:
        return FitResult(best_validation_loss=0.0, best_epoch=1)

    def predict(self, store, indices):
        return np.full((len(indices), store.num_items), np.nan, np.float32)

    def state_dict(self):
        return {}

    def load_state_dict(self, state, store) -> None:
        pass


class SpaceProbe(_NoModel):
    """One dimension of every kind, over ModelParams fields and hyperparameters of its own."""

    name = SPACE_PROBE
    hyperparameters = {"width": 8, "l2": 0.0, "activation": "relu"}
    search_space = {
        "units": choice([8, 16]),
        "dropout": uniform(0.1, 0.5),
        "width": randint(2, 9),
        "l2": loguniform(1e-6, 1e-2),
        "activation": grid(["relu", "tanh"]),
    }


def sweep_loss(learning_rate: float, width: int) -> float:
    """The probe's validation loss: it reads both values as its fit sees them (the rate via its training config)."""
    return abs(math.log10(learning_rate) + 2.0) + width / 100.0


class SweepProbe(_NoModel):
    """A model whose only new hyperparameter (``width``) is declared here and nowhere else."""

    name = SWEEP_PROBE
    hyperparameters = {"width": 4}
    search_space = {"width": randint(1, 50)}

    def fit(self, store, dependencies, callback=None) -> FitResult:
        loss = sweep_loss(self.training.learning_rate, self.params.width)
        if callback is not None:
            callback("final", 1, loss, loss)
        return FitResult(
            history={"final": [{"epoch": 1, "train": loss, "val": loss}]},
            best_validation_loss=loss,
            best_epoch=1,
        )


@pytest.fixture
def probes(monkeypatch):
    registry.register(SpaceProbe)
    registry.register(SweepProbe)
    monkeypatch.setattr(tune, "_trial", _trial_with_probes)
    yield
    registry._REGISTRY.pop(SPACE_PROBE, None)
    registry._REGISTRY.pop(SWEEP_PROBE, None)


_real_trial = tune._trial


def _trial_with_probes(config, data=None, dependencies=None):
    """The trainable: a Ray worker imports this module by name to unpickle it, and registers the probes here."""
    registry.register(SpaceProbe)
    registry.register(SweepProbe)
    return _real_trial(config, data=data, dependencies=dependencies)


def _cfg(*overrides: str, models=(SPACE_PROBE,), spaces=None, path=None):
    """A config; ``spaces`` goes in as YAML would have it (``--set`` splits keys at dots, as in the probes' names)."""
    data = load_yaml(path) if path else {}
    apply_overrides(data, [f"models=[{', '.join(models)}]", *overrides])
    if spaces:
        data.setdefault("tune", {})["spaces"] = spaces
    return from_dict(ExperimentConfig, data)


# --------------------------------------------------------------------------------------- what reaches Tune
def test_the_paper_grid_is_what_relative_representation_declares_and_tune_walks():
    cfg = load_config(None, ["models=[relative_representation]"])
    space = tune.param_space(cfg, ["relative_representation"])["trial"]["grid_search"]
    declared = registry.get("relative_representation").search_space
    assert list(declared) == ["batch_size", "units", "dropout", "num_anchors"]
    assert declared["num_anchors"].values == [50, 125, 250]
    expected = list(itertools.product(*(d.values for d in declared.values())))
    assert [tuple(p["params"][f] for f in declared) for p in space] == expected  # order = trial index
    assert [p["index"] for p in space] == list(range(4 * 3 * 3 * 3))
    # The shorthands still replace one field for every model that searches it (configs/tiny.yaml uses them).
    tiny = load_config(REPO / "configs" / "tiny.yaml", ["models=[relative_representation]"])
    points = tune.param_space(tiny, ["relative_representation"])["trial"]["grid_search"]
    assert {(p["params"]["units"], p["params"]["num_anchors"]) for p in points} == {(16, 20)}
    assert registry.get("conversation").search_space == PAPER_GRID


@pytest.mark.parametrize("search", ["random", "optuna"])
def test_a_declared_space_reaches_tune_unchanged(probes, search):
    from ray.tune.search.sample import Categorical, Float, Integer, LogUniform, Uniform

    cfg = _cfg(f"tune.search={search}")
    params = tune.param_space(cfg, [SPACE_PROBE])["trial"]["params"]
    assert isinstance(params["units"], Categorical) and params["units"].categories == [8, 16]
    dropout = params["dropout"]
    assert isinstance(dropout, Float) and isinstance(dropout.get_sampler(), Uniform)
    assert (dropout.lower, dropout.upper) == (0.1, 0.5)
    extra = params["extra"]
    assert isinstance(extra["width"], Integer) and (extra["width"].lower, extra["width"].upper) == (2, 9)
    assert isinstance(extra["l2"].get_sampler(), LogUniform) and (extra["l2"].lower, extra["l2"].upper) == (
        1e-6,
        1e-2,
    )
    assert extra["activation"].categories == ["relu", "tanh"]
    assert params["batch_size"] == ModelParams().batch_size  # not searched: the configured value
    assert "learning_rate" not in extra  # unset (None): the run's training.learning_rate applies


def test_a_config_changes_one_models_space_and_nothing_else(probes):
    cfg = _cfg(
        "tune.search=random",
        "tune.units=[32]",  # a shorthand: every model that searches units
        "tune.spaces.conversation.units={grid: [8]}",
        models=(SPACE_PROBE, "conversation"),
        spaces={
            SPACE_PROBE: {
                "l2": None,  # not searched any more
                "learning_rate": {"loguniform": ["1e-4", "1e-2"]},  # as YAML 1.1 reads 1e-4: a string
            },
            "conversation": {"units": {"grid": [8]}},
        },
    )
    space = tune.search_space(cfg, SPACE_PROBE)
    assert space["units"] == grid([32]) and "l2" not in space
    assert space["learning_rate"] == loguniform(1e-4, 1e-2)
    assert tune.search_space(cfg, "conversation") == {**PAPER_GRID, "units": grid([8])}  # tune.spaces wins
    assert tune.sampled_params(cfg, SPACE_PROBE)["extra"]["l2"] == 0.0  # its declared default


# --------------------------------------------------------------------------------------- refused at load
@pytest.mark.parametrize(
    "override, where, says",
    [
        (
            "tune.spaces.conversation.units={logrithmic: [8, 64]}",
            "tune.spaces.conversation.units",
            "unknown kind",
        ),
        (
            "tune.spaces.conversation.weight_decay={grid: [0.1]}",
            "tune.spaces.conversation.weight_decay",
            "no hyperparameter",
        ),
        ("tune.spaces.convers.units={grid: [8]}", "tune.spaces.convers", "not a model"),
        (
            "tune.spaces.conversation.learning_rate={loguniform: [1.0e-4, 1.0e-2]}",
            "tune.spaces.conversation.learning_rate",
            "grid search cannot walk",
        ),
        ("tune.spaces.conversation.units={uniform: [8, 64]}", "tune.spaces.conversation.units", "not int"),
        ("tune.spaces.conversation.dropout={grid: [0.2, 1.5]}", "tune.spaces.conversation.dropout", "[0, 1)"),
        (
            "tune.spaces.conversation.learning_rate={choice: [0.0, 0.1]}",
            "tune.spaces.conversation.learning_rate",
            "positive",
        ),
        ("tune.spaces.conversation.units={grid: []}", "tune.spaces.conversation.units", "at least one value"),
        ("tune.spaces.conversation.units=[8, 16]", "tune.spaces.conversation.units", "expected one of"),
        (
            "hyperparameters.conversation.extra.depth=2",
            "hyperparameters.conversation.extra",
            "no hyperparameter",
        ),
        (
            "hyperparameters.conversation.extra.learning_rate=-1.0",
            "hyperparameters.conversation.extra.learning_rate",
            "positive",
        ),
        ("tune.num_samples=0", "tune.num_samples", ">= 1"),
        ("tune.search=bayes", "tune.search", "not one of"),
    ],
)
def test_a_bad_space_is_refused_at_load_in_one_line(override, where, says):
    with pytest.raises(ConfigError) as error:
        load_config(None, ["models=[conversation]", override])
    message = str(error.value)
    assert f"{where}:" in message and says in message and "\n" not in message, message


def test_a_range_is_fine_for_the_sampling_searchers():
    override = "tune.spaces.conversation.learning_rate={loguniform: [1.0e-4, 1.0e-2]}"
    for search in ("random", "optuna"):
        load_config(None, ["models=[conversation]", f"tune.search={search}", override])


def test_a_bad_declaration_fails_when_the_model_file_is_imported():
    with pytest.raises(TypeError, match="'depth' is not a hyperparameter"):

        class Undeclared(_NoModel):
            name = "tests.undeclared"
            search_space = {"depth": grid([1, 2])}

    with pytest.raises(TypeError, match="search_space.depth"):

        class WrongType(_NoModel):
            name = "tests.wrong_type"
            hyperparameters = {"depth": 1}
            search_space = {"depth": uniform(1, 3)}  # floats for an integer


# --------------------------------------------------------------------------------------- searchers and seeds
def _proposals(search: str, seed: int, n: int = 6) -> list:
    """What the stage's searcher for the probe proposes first (no trial runs: TPE's first ten are seeded draws)."""
    cfg = _cfg(f"tune.search={search}", f"seed={seed}")
    space = tune.param_space(cfg, [SPACE_PROBE])
    if search == "grid":
        return [point["params"] for point in space["trial"]["grid_search"]]
    searcher = tune.searcher(cfg, SPACE_PROBE)
    searcher.set_search_properties(None, None, space)
    return [searcher.suggest(f"trial{i}")["trial"] for i in range(n)]


@pytest.mark.parametrize("search", ["grid", "random", "optuna"])
def test_each_searcher_proposes_the_same_trials_for_the_same_seed(search, monkeypatch):
    registry.register(SpaceProbe)
    try:
        if search == "grid":  # the probe's ranges have no grid: walk its lists only
            monkeypatch.setattr(
                SpaceProbe, "search_space", {"units": choice([8, 16]), "activation": grid(["a", "b"])}
            )
            monkeypatch.setattr(
                SpaceProbe, "hyperparameters", {**SpaceProbe.hyperparameters, "activation": "a"}
            )
        first, again, other = _proposals(search, 0), _proposals(search, 0), _proposals(search, 1)
    finally:
        registry._REGISTRY.pop(SPACE_PROBE, None)
    assert first == again
    if search == "grid":
        assert first == other and len(first) == 4  # a grid has no randomness to seed
    else:
        assert first != other
        assert [p["index"] for p in first] == list(range(6))  # the trials' directory names
        assert len({p["params"]["extra"]["l2"] for p in first}) == 6  # sampled, not one point repeated


# --------------------------------------------------------------------------------------- a model's own learning rate
def test_a_models_learning_rate_replaces_the_runs_for_its_fits_only():
    training = TrainingConfig(learning_rate=1e-3)
    tuned = registry.get("conversation")(ModelParams(extra={"learning_rate": 0.02}), training, 0)
    plain = registry.get("conversation")(ModelParams(), training, 0)
    assert tuned.training.learning_rate == 0.02 and tuned.params.learning_rate == 0.02
    assert plain.training.learning_rate == 1e-3 and plain.params.learning_rate is None
    assert training.learning_rate == 1e-3  # the run's config is not changed in place


def test_checkpoints_keep_the_models_own_hyperparameters_and_old_ones_still_load():
    from mmrec_ray.data.features import FeatureStore
    from mmrec_ray.training.runner import checkpoint_payload, fit_one, restore_checkpoint

    store = FeatureStore(random_prepared(num_pes=60), device="cpu")
    training = TrainingConfig(device="cpu")
    model, result = fit_one("popular", 0, store, ModelParams(extra={"learning_rate": 0.5}), training)
    payload = checkpoint_payload(model, result, training)
    assert payload["params"]["extra"] == {"learning_rate": 0.5}
    restored, _ = restore_checkpoint(payload, store, training)
    assert restored.params == model.params and restored.training.learning_rate == 0.5
    old = {**payload, "params": {"batch_size": 256, "units": 128, "dropout": 0.2, "num_anchors": 125}}
    assert restore_checkpoint(old, store, training)[0].params.learning_rate is None


# --------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_a_hyperparameter_declared_only_in_the_model_file_is_swept_from_the_config(
    ray_local, probes, tmp_path
):
    """``width`` exists only in SweepProbe; the learning rate is searched for it by the config alone. Each trial's
    loss is computed from the values its fit saw, so a value that did not reach the model shows as a mismatch."""
    run_dir = tmp_path / "run"
    random_prepared(num_pes=60).save(run_dir / "prepared" / "tensors")
    cfg = _cfg(
        f"run_dir={run_dir}",
        "name=sweep_test",
        "tune.search=random",
        "tune.num_samples=4",
        models=(SWEEP_PROBE,),
        spaces={SWEEP_PROBE: {"learning_rate": {"loguniform": [1.0e-4, 1.0e-1]}}},
        path=REPO / "configs" / "tiny.yaml",
    )
    best = tune.run_tune(cfg, run_dir, log=print)

    trials = pd.read_csv(tune.tune_dir(run_dir) / "trials.csv")
    assert len(trials) == 4 and set(trials["trial"]) == {f"{SWEEP_PROBE}_{i:03d}" for i in range(4)}
    assert trials["width"].between(1, 49).all() and trials["learning_rate"].between(1e-4, 1e-1).all()
    assert trials["learning_rate"].nunique() == 4
    for row in trials.itertuples():
        assert row.best_val_loss == pytest.approx(sweep_loss(row.learning_rate, row.width))
    winner = trials.loc[trials["best_val_loss"].idxmin()]
    chosen = best[SWEEP_PROBE]
    assert chosen["extra"]["width"] == winner["width"] and chosen["extra"]["learning_rate"] == pytest.approx(
        winner["learning_rate"]
    )
    # The final fit uses the best config: the model's own values and its learning rate.
    params = train.final_params(cfg, best, SWEEP_PROBE)
    assert params.width == winner["width"]
    model = registry.get(SWEEP_PROBE)(params, fitting.trial_training(cfg.training), 0)
    assert model.training.learning_rate == pytest.approx(winner["learning_rate"])
