"""One run per storage: a second `mmrec run` on a run directory (local or URI) that another run holds refuses with
one line naming the holder and touches nothing; a lock left by a dead process on this host is taken over; a lock
of another host is refused until --break-lock; the lock is released on success, error and Ctrl-C."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmrec_ray.cli import main
from mmrec_ray.errors import MmrecError
from mmrec_ray.pipeline.lock import LOCK_NAME, RunLock, break_lock, read_lock

REPO = Path(__file__).resolve().parents[2]
TINY = str(REPO / "configs" / "tiny.yaml")
# Were the lock ignored, this config would still end at its first stage (released data without a path) instead
# of running the whole pipeline, and the test would fail fast on the files the run wrote.
FAILS_FAST = ["--set", "data.source=released"]

HOLD = """
import sys, time
from mmrec_ray.pipeline.lock import RunLock
lock = RunLock(sys.argv[1], log=lambda line: None).acquire()
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder():
    """Start a process that takes the lock of a storage and keeps it until killed."""
    processes = []

    def start(storage: str) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, storage], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        processes.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def test_second_run_on_a_local_storage_refuses_and_names_the_holder(tmp_path, capsys, holder):
    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "predictions" / "conversation__seed0.parquet").write_bytes(b"the first run's predictions")
    (run / "config.yaml").write_text("name: first\n")
    first = holder(str(run))
    before = _snapshot(run)

    code = main(["run", "--config", TINY, "--run-dir", str(run), *FAILS_FAST])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"mmrec run: error: run directory in use: {run}: "), lines[0]
    assert f"pid {first.pid}" in lines[0] and socket.gethostname() in lines[0], lines[0]
    assert "--break-lock" in lines[0]
    assert _snapshot(run) == before  # not a byte written, the holder's lock included
    assert read_lock(str(run))["pid"] == first.pid


def test_second_run_on_a_uri_storage_refuses_and_names_the_holder(tmp_path, capsys, holder, monkeypatch):
    monkeypatch.setenv("MMREC_STAGING", str(tmp_path / "staging"))
    store = tmp_path / "bucket"
    uri = f"file://{store}/run"
    first = holder(uri)
    assert (store / "run" / LOCK_NAME).is_file()
    before = _snapshot(store)

    code = main(["run", "--config", TINY, "--run-dir", uri, *FAILS_FAST])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"run directory in use: {uri}: " in err and f"pid {first.pid}" in err, err
    assert _snapshot(store) == before
    assert not (tmp_path / "staging").exists()  # nothing pulled either


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path, holder):
    run = tmp_path / "run"
    first = holder(str(run))
    first.kill()  # as `kill -9`, or a crashed node: nothing released the lock
    first.wait()
    assert read_lock(str(run))["pid"] == first.pid

    lines: list[str] = []
    with RunLock(str(run), log=lines.append) as lock:
        assert read_lock(str(run))["pid"] == os.getpid()
        assert lock.held
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "no longer running" in lines[0], lines
    assert not (run / LOCK_NAME).exists()
    assert [p.name for p in run.iterdir()] == []  # the stale lock went, no aside copy stays behind


def test_lock_of_a_dead_process_on_a_uri_storage_is_taken_over(tmp_path, holder):
    uri = f"file://{tmp_path}/bucket/run"
    first = holder(uri)
    first.kill()
    first.wait()
    lines: list[str] = []
    with RunLock(uri, log=lines.append):
        assert read_lock(uri)["pid"] == os.getpid()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0], lines
    assert read_lock(uri) is None


def _foreign_lock(run: Path) -> None:
    run.mkdir(parents=True, exist_ok=True)
    record = {"pid": 4242, "host": "node-7.example", "started": "2024-05-01T10:00:00+00:00", "token": "x"}
    (run / LOCK_NAME).write_text(json.dumps(record))


def test_lock_of_another_host_is_refused_until_broken(tmp_path, capsys):
    run = tmp_path / "run"
    _foreign_lock(run)
    with pytest.raises(MmrecError, match=r"pid 4242 on host node-7\.example since 2024-05-01"):
        RunLock(str(run)).acquire()
    assert json.loads((run / LOCK_NAME).read_text())["host"] == "node-7.example"

    # --break-lock takes the lock over and the run proceeds (to the config error of this test's config).
    code = main(["run", "--config", TINY, "--run-dir", str(run), "--break-lock", *FAILS_FAST])
    captured = capsys.readouterr()
    assert code == 2 and "data.source=released needs data.path" in captured.err, captured.err
    assert "node-7.example" in captured.out  # the broken lock is named in the log
    assert not (run / LOCK_NAME).exists()  # released after the error


def test_unreadable_lock_is_refused_not_guessed(tmp_path):
    """A lock cut short while it was written says nothing about its holder: refused, with the way out named."""
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_bytes(b'{"pid": 12')
    os.utime(run / LOCK_NAME, (time.time() - 3600, time.time() - 3600))
    with pytest.raises(MmrecError, match=r"mmrec\.lock is unreadable.*--break-lock"):
        RunLock(str(run)).acquire()


def test_break_lock_without_a_lock_is_quiet(tmp_path):
    lines: list[str] = []
    assert break_lock(str(tmp_path / "run"), log=lines.append) is None
    assert lines == []


def test_lock_is_held_during_the_run_and_released_on_ctrl_c(tmp_path, capsys, monkeypatch):
    from mmrec_ray.pipeline.runner import Pipeline

    run = tmp_path / "run"
    seen = {}

    def interrupted(self):
        seen["lock"] = read_lock(str(run))
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "generate", interrupted)
    assert main(["run", "--config", TINY, "--run-dir", str(run)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert seen["lock"]["pid"] == os.getpid() and seen["lock"]["host"] == socket.gethostname()
    assert time.time() - seen["lock"]["started_at"] < 60
    assert not (run / LOCK_NAME).exists()


def test_a_lock_taken_over_by_another_run_is_not_released_by_the_first(tmp_path):
    """A run whose lock was broken must not delete the lock of the run that broke it."""
    run = tmp_path / "run"
    lock = RunLock(str(run), log=lambda _line: None).acquire()
    break_lock(str(run), log=lambda _line: None)
    second = RunLock(str(run), log=lambda _line: None).acquire()
    lock.release()
    assert read_lock(str(run))["token"] == second.token
    second.release()
    assert read_lock(str(run)) is None
