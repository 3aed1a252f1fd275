"""``configure_environment`` leaves RAY_AUTH_MODE to Ray (token auth for a local Ray) and checks a set value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmrec_ray.errors import ConfigError
from mmrec_ray.pipeline.ray_env import configure_environment

REPO = Path(__file__).resolve().parents[2]


def test_auth_mode_is_not_set_when_the_user_did_not(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    configure_environment()
    assert "RAY_AUTH_MODE" not in os.environ


@pytest.mark.parametrize("mode", ["token", "TOKEN", "disabled"])
def test_a_mode_ray_accepts_is_kept(monkeypatch, mode):
    monkeypatch.setenv("RAY_AUTH_MODE", mode)
    configure_environment()
    assert os.environ["RAY_AUTH_MODE"] == mode


def test_a_mode_ray_would_read_as_disabled_is_refused(monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "tokens")
    with pytest.raises(ConfigError, match="RAY_AUTH_MODE='tokens'"):
        configure_environment()


@pytest.mark.slow
def test_local_ray_runs_under_rays_default_auth(tmp_path):
    """A fresh local Ray with RAY_AUTH_MODE unset: Ray turns token auth on and makes its own token (here in a
    throwaway HOME), and tasks run without any setup."""
    script = (
        "import os, ray\n"
        "from mmrec_ray.pipeline import ray_env\n"
        "started = ray_env.init_ray('local', num_cpus=1, include_dashboard=False)\n"
        "print('task', ray.get(ray.remote(lambda: 41 + 1).remote()))\n"
        "print('mode', os.environ.get('RAY_AUTH_MODE'))\n"
        "ray_env.shutdown_ray(started)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "task 42" in done.stdout and "mode token" in done.stdout
    assert (tmp_path / ".ray" / "auth_token").read_text().strip()
