"""Atomic writes (mmrec_ray/io.py): a failed write leaves nothing behind, a written file is on disk before it
replaces the old one, and its mode follows the umask like any other file the user creates."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from mmrec_ray.errors import StorageError
from mmrec_ray.io import atomic_write, atomic_write_text


def _disk_fills_up(p: Path) -> None:
    with open(p, "wb") as handle:  # half of it reaches the disk, then the device is full
        handle.write(b"partial")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a failed write(2) names no file


def test_failed_atomic_write_leaves_neither_temp_nor_target(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    with pytest.raises(StorageError) as raised:
        atomic_write(target, _disk_fills_up)
    message = str(raised.value)
    assert str(target) in message and "no space left on device" in message and "\n" not in message
    assert list((tmp_path / "out").iterdir()) == []


def test_failed_atomic_write_keeps_the_previous_file(tmp_path):
    target = atomic_write_text(tmp_path / "manifest.json", "old\n")
    with pytest.raises(StorageError):
        atomic_write(target, _disk_fills_up)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_atomic_write_flushes_the_file_to_disk_before_the_rename(tmp_path, monkeypatch):
    """Without fsync a crash right after the rename can leave a 0-byte target on some filesystems."""
    calls: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: calls.append("replace") or real_replace(a, b))
    atomic_write_text(tmp_path / "a.txt", "content")
    assert "fsync" in calls and calls.index("fsync") < calls.index("replace")


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_write_respects_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "report.md", "# report\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == mode
