"""Errors inside Ray keep the one-line promise: a user error raised in a task arrives as its own line (full trace
in RUN_DIR/logs), what can be checked before any work is (the encoder, the resources a trial needs), and hints
name what the user can type in the command they ran."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrec_ray import errors
from mmrec_ray.config import load_config
from mmrec_ray.errors import ConfigError, MmrecError, one_line, user_error_in
from mmrec_ray.pipeline.runner import Pipeline, run_pipeline

REPO = Path(__file__).resolve().parents[2]


def _raise_config_error():
    raise ConfigError("embed.encoder 'nope' cannot be loaded")


def test_a_user_error_raised_in_a_ray_task_is_found_inside_rays_wrapper(ray_local):
    task = ray_local.remote(_raise_config_error)
    with pytest.raises(Exception) as caught:
        ray_local.get(task.remote())
    # Ray's wrapper subclasses ConfigError, but its text is the remote traceback: not one line.
    assert isinstance(caught.value, MmrecError) and "\n" in str(caught.value)
    inner = user_error_in(caught.value)
    assert isinstance(inner, ConfigError) and str(inner) == "embed.encoder 'nope' cannot be loaded"
    assert one_line(caught.value) == "embed.encoder 'nope' cannot be loaded"


def test_a_user_error_known_only_as_text_is_found_too():
    """An actor whose constructor failed (ActorDiedError) carries the original only in its message."""
    wrapped = RuntimeError(
        "The actor died because of an error raised in its creation task\nTraceback (most recent call last):\n"
        "  File \"encoder.py\", line 1\nmmrec_ray.errors.ConfigError: cannot load encoder 'x': no such folder\n"
    )
    assert str(user_error_in(wrapped)) == "cannot load encoder 'x': no such folder"
    assert user_error_in(RuntimeError("a bug")) is None
    assert (
        one_line(RuntimeError("remote traceback\n...\nValueError: shapes differ"))
        == "ValueError: shapes differ"
    )


def test_a_stage_error_from_ray_becomes_one_line_with_the_trace_in_the_run_logs(ray_local, tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={tmp_path / 'run'}"])
    pipeline = Pipeline(cfg, log=lambda line: None)
    task = ray_local.remote(_raise_config_error)
    with pytest.raises(ConfigError) as caught:
        pipeline._guarded("embed", lambda: ray_local.get(task.remote()))
    message = str(caught.value)
    assert "\n" not in message and message.startswith("embed.encoder 'nope' cannot be loaded (full trace: ")
    trace = tmp_path / "run" / "logs" / "embed.error.log"
    assert trace.exists() and "Traceback" in trace.read_text()
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback (and is logged too)
        pipeline._guarded("fit", lambda: 1 / 0)


def test_an_encoder_that_cannot_load_offline_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    run_dir = tmp_path / "run"
    cfg = load_config(
        REPO / "configs" / "tiny.yaml",
        [f"run_dir={run_dir}", "data.text=true", "embed.encoder=some-org/not-downloaded-model"],
    )
    with pytest.raises(
        ConfigError, match=r"embed.encoder 'some-org/not-downloaded-model' is neither a local"
    ):
        run_pipeline(cfg, log=lambda line: None)
    assert not (run_dir / "data").exists() and not (run_dir / "prepared").exists()


def test_trials_asking_for_gpus_the_cluster_lacks_fail_at_once_naming_the_setting(ray_local):
    from mmrec_ray.pipeline.ray_env import require_per_node

    errors.settings_from_config()
    with pytest.raises(ConfigError, match=r"use --set tune.gpus_per_trial=0 to run on CPUs"):
        require_per_node("tune trials", {"GPU": (1.0, "tune.gpus_per_trial", "--gpus 0")})
    with pytest.raises(ConfigError, match=r"64 CPU\(s\) each.*largest: 2"):
        require_per_node("fit workers", {"CPU": (64.0, "fit.cpus_per_worker", "--cpus 2")})
    require_per_node("fit workers", {"CPU": (1.0, "fit.cpus_per_worker", "--cpus 1"), "GPU": (0.0, "", "")})


def test_hints_name_the_flag_of_the_command_the_user_ran(monkeypatch):
    monkeypatch.setitem(errors._settings_from, "kind", "flags")
    assert errors.hint("embed.num_gpus", 0, "--num-gpus 0") == "--num-gpus 0"
    errors.settings_from_config()
    assert errors.hint("embed.num_gpus", 0, "--num-gpus 0") == "--set embed.num_gpus=0"
