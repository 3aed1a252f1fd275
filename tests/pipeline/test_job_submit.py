"""`ray job submit` of the tiny pipeline to a `ray start --head` cluster that this test starts and stops.

The cluster gets its own --temp-dir and free ports, and is stopped by the PIDs of its own processes (found by
that temp dir), never by `ray stop`, which would end every Ray on the machine. It runs with token authentication
as cluster.yaml does: its own token, in a file named by RAY_AUTH_TOKEN_PATH (so the user's ~/.ray/auth_token is
neither read nor written), shared by the cluster and the job CLI.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pids_using(marker: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            pids.append(int(entry.name))
    return pids


def _stop(marker: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_using(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 5
        while _pids_using(marker) and time.time() < deadline:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def head_cluster():
    """`ray start --head` with a dashboard (the jobs API lives there) on free ports and token authentication;
    yields the jobs address and the environment (token included) that the job CLI needs."""
    temp_dir = tempfile.mkdtemp(prefix="rayjob", dir="/tmp")  # short: Ray's socket paths have a length limit
    dashboard = _free_port()
    token_path = Path(temp_dir) / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    env.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over the file
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # the job's `python` is this environment's
    env.pop("RAY_ADDRESS", None)
    command = [str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--port", str(_free_port())]
    command += ["--dashboard-port", str(dashboard), "--include-dashboard", "true", "--temp-dir", temp_dir]
    command += ["--ray-client-server-port", str(_free_port())]
    command += ["--dashboard-agent-listen-port", str(_free_port()), "--disable-usage-stats"]
    try:
        subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=180)
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_jobs_api_refuses_requests_without_the_token(head_cluster):
    address, env = head_cluster
    for headers in ({}, {"Authorization": "Bearer " + "0" * 64}):
        request = urllib.request.Request(f"{address}/api/jobs/", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code in (401, 403), headers
    token = Path(env["RAY_AUTH_TOKEN_PATH"]).read_text()
    request = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


@pytest.mark.slow
def test_ray_job_submit_runs_the_tiny_pipeline(head_cluster, tmp_path):
    address, env = head_cluster
    storage = tmp_path / "run"
    submit = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".", "--"]
    submit += ["python", "jobs/pipeline.py", "--config", "configs/tiny.yaml", "--run-dir", str(storage)]
    # Small on purpose: this test is about submission; the stages themselves are tested elsewhere.
    submit += ["--set", "models=[popular,conversation]", "--set", "fit.seeds=[0]"]
    submit += ["--set", "analyses.enabled=false"]
    done = subprocess.run(submit, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "succeeded" in done.stdout + done.stderr

    # The job ran on the cluster and wrote every stage's outputs into --storage.
    assert (storage / "prepared" / "tensors" / "meta.json").exists()
    assert (storage / "tune" / "best_configs.yaml").exists()
    for name in ("popular", "conversation"):
        frame = pd.read_parquet(storage / "predictions" / f"{name}__seed0.parquet")
        assert set(frame["model"]) == {name}
    table = (storage / "results" / "table3.md").read_text()
    assert "Popular" in table or "popular" in table
    manifest = json.loads((storage / "manifest.json").read_text())
    assert manifest["fit_seeds"] == [0] and {"tune", "fit", "aggregate"} <= set(manifest["stages"])
    assert "[aggregate] done" in done.stdout  # the job's own output streamed back through the jobs API
