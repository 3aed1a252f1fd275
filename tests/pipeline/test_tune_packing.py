"""Packing many small trials per device (#15 item 4): a trial's torch threads follow its CPU allocation (so
1-CPU trials side by side do not oversubscribe the cores), and fractional GPUs per trial reach Tune as given.
No Ray cluster is started: the trainable runs in-process with Tune's report stubbed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmrec_ray.config import load_config
from mmrec_ray.errors import ConfigError
from mmrec_ray.pipeline import tune
from tests.pipeline.conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]


def _cfg(*overrides: str):
    return load_config(REPO / "configs" / "tiny.yaml", ["models=[conversation]", *overrides])


def test_fractional_gpus_and_cpus_per_trial_are_accepted_and_kept():
    cfg = _cfg("tune.gpus_per_trial=0.25", "tune.cpus_per_trial=0.5")
    assert (cfg.tune.gpus_per_trial, cfg.tune.cpus_per_trial) == (0.25, 0.5)
    assert tune.trial_resources(cfg) == {"cpu": 0.5, "gpu": 0.25}
    for bad in ("tune.gpus_per_trial=-0.25", "tune.cpus_per_trial=0"):
        with pytest.raises(ConfigError):
            _cfg(bad)


@pytest.mark.parametrize(
    ("cpus", "configured", "threads"),
    [(1.0, 0, 1), (0.5, 0, 1), (4.0, 0, 4), (2.5, 0, 2), (4.0, 2, 2), (1.0, 8, 1)],
)
def test_a_trial_runs_as_many_torch_threads_as_cpus_it_reserves(cpus, configured, threads):
    """training.num_threads may lower a trial's threads, never raise them above its CPU allocation."""
    cfg = _cfg(f"tune.cpus_per_trial={cpus}", f"training.num_threads={configured}")
    assert tune.trial_threads(cfg) == threads
    space = tune.param_space(cfg, ["conversation"])
    (point, *_) = space["trial"]["grid_search"]
    assert point["training"]["num_threads"] == threads


def test_the_trainable_sets_torch_threads_before_it_fits(monkeypatch):
    cfg = _cfg("tune.cpus_per_trial=1", "training.num_threads=4")
    (point, *_) = tune.param_space(cfg, ["conversation"])["trial"]["grid_search"]
    seen = {}

    class Stop(Exception):
        pass

    def fit_one(*args, **kwargs):
        seen["threads"] = torch.get_num_threads()
        raise Stop

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(tune, "fit_one", fit_one)
    try:
        with pytest.raises(Stop):
            tune._trial({"trial": point}, data=random_prepared(num_pes=60), dependencies={})
        assert seen["threads"] == 1
    finally:
        torch.set_num_threads(previous)


def test_tune_gets_the_fractional_resources(monkeypatch, tmp_path):
    """What ``_tune_level`` hands ``tune.with_resources``: the config's fractions, unchanged."""
    import ray.tune

    from mmrec_ray.pipeline import ray_env

    cfg = _cfg(f"run_dir={tmp_path}", "tune.gpus_per_trial=0.25", "tune.cpus_per_trial=0.5")
    seen = {}

    class Stop(Exception):
        pass

    def with_resources(trainable, resources):
        seen["resources"] = resources
        raise Stop

    monkeypatch.setattr(ray_env, "require_per_node", lambda *args, **kwargs: None)  # no GPU on this machine
    monkeypatch.setattr(ray.tune, "with_parameters", lambda trainable, **kwargs: trainable)
    monkeypatch.setattr(ray.tune, "with_resources", with_resources)
    with pytest.raises(Stop):
        tune._tune_level(cfg, tmp_path, 0, ["conversation"], None, {}, lambda line: None)
    assert seen["resources"] == {"cpu": 0.5, "gpu": 0.25}
