"""Ctrl-C during the fit stage of `mmrec run` — after Ray Tune ran in the same process — ends the run with exit 130
and the resume hint (Tune used to leave its own SIGINT handler installed, which swallowed every later Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ctrl_c_after_the_tune_stage_interrupts_the_run(tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "mmrec_ray.cli", "run", "--config", str(REPO / "configs" / "tiny.yaml")]
    command += [
        "--set",
        f"run_dir={run_dir}",
        "--set",
        "analyses.enabled=false",
        "--set",
        "training.max_epochs=50",
    ]
    command += ["--set", "training.patience=50"]  # a fit stage long enough to be interrupted in
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stages = run_dir / "stages.log"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            if stages.exists() and "[tune] done" in stages.read_text():
                break
            time.sleep(1)
        assert process.poll() is None, "the run ended before its fit stage"
        time.sleep(8)  # into the fit stage
        assert process.poll() is None, "the fit stage ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "re-run to resume" in stderr
