"""Quiet by default: one progress display per stage, Ray's own output off (in RUN_DIR/logs/ray); -v shows all."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmrec_ray.pipeline import console

REPO = Path(__file__).resolve().parents[2]


def test_progress_off_a_terminal_prints_a_line_per_interval_and_the_end():
    stream = io.StringIO()
    progress = console.Progress(10, "fit", "(model, seed) fits", every=3600, stream=stream)
    progress.update()  # the first line is printed at once
    for _ in range(8):
        progress.update()  # within the interval: silent
    progress.update()  # the last one is always printed
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("  fit: 1/10 (model, seed) fits, ETA ")
    assert lines[-1] == "  fit: 10/10 (model, seed) fits"
    assert len(lines) == 2


def test_quiet_and_verbose_ray_options():
    console.set_verbose(False)
    assert console.ray_init_options() == {"logging_level": "ERROR", "log_to_driver": False}
    console.set_verbose(True)
    try:
        assert console.ray_init_options()["logging_level"] == "WARNING"
        assert "log_to_driver" not in console.ray_init_options()
    finally:
        console.set_verbose(False)


def _run(run_dir: Path, *extra: str) -> tuple[int, list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    command = [sys.executable, "-m", "mmrec_ray.cli", "run", "--config", str(REPO / "configs" / "tiny.yaml")]
    for override in (f"run_dir={run_dir}", "analyses.enabled=false", "fit.seeds=[0]"):
        command += ["--set", override]
    done = subprocess.run(
        [*command, *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


@pytest.mark.slow
def test_a_tiny_run_prints_stage_lines_and_progress_not_rays_output(tmp_path):
    code, lines = _run(tmp_path / "run")
    assert code == 0, "\n".join(lines[-40:])
    text = "\n".join(lines)
    for noise in (
        "Trial status",
        "PlacementGroupCleaner",
        "logging_progress",
        "Checkpoint successfully",
        "╭",
    ):
        assert noise not in text, noise
    assert any(line.startswith("[tune] done") for line in lines)
    assert any(line.startswith("  fit: 5/5 (model, seed) fits") for line in lines)
    assert len(lines) < 80, len(lines)
    assert (tmp_path / "run" / "logs" / "ray").is_symlink()
    # -v shows Ray's own output again (a re-run from tune, so that Tune runs).
    code, verbose_lines = _run(tmp_path / "run", "-v", "--from", "tune")
    assert code == 0 and any("Trial status" in line or "╭" in line for line in verbose_lines)


def test_quiet_mode_silences_ray_data_through_its_own_variable(monkeypatch):
    """Ray Data re-reads its logging config when it starts, overriding a level set before; RAY_DATA_LOG_LEVEL is
    the setting it honours (its INFO lines leaked into the demo's embed stage)."""
    monkeypatch.delenv("RAY_DATA_LOG_LEVEL", raising=False)
    console.set_verbose(False)
    console.quiet_ray_environment()
    assert os.environ["RAY_DATA_LOG_LEVEL"] == "CRITICAL"
    monkeypatch.delenv("RAY_DATA_LOG_LEVEL")
    console.set_verbose(True)
    try:
        console.quiet_ray_environment()
        assert "RAY_DATA_LOG_LEVEL" not in os.environ
    finally:
        console.set_verbose(False)


def test_quiet_mode_keeps_raylet_warnings_off_the_console(capsys):
    """The driver prints the raylet's warnings ("16 PYTHON worker processes have been started ...") whatever
    log_to_driver says; quiet mode leaves them in the raylet's log."""
    import ray._private.worker as ray_worker

    console.set_verbose(False)
    console.quiet_ray_libraries()
    console.quiet_ray_libraries()  # twice: wrapped once
    message = {
        "lines": ["WARNING: 16 PYTHON worker processes have been started"],
        "pid": "raylet",
        "is_err": False,
    }
    ray_worker.print_to_stdstream(message, ignore_prefix=False)
    assert "PYTHON worker processes" not in capsys.readouterr().out
    console.set_verbose(True)
    try:
        ray_worker.print_to_stdstream(message, ignore_prefix=False)
        assert "PYTHON worker processes" in capsys.readouterr().out
    finally:
        console.set_verbose(False)
