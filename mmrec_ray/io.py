"""Atomic writes: a crash leaves either the old file or the new one, never a half-written file.

The data goes to a hidden temporary file next to the target (``.NAME.XXXXXXXX.tmp``), is flushed to disk, gets
the mode any new file of the user would get (``0o666 & ~umask``), and is renamed onto the target. A failure
removes the temporary file and leaves the target as it was; a storage failure a user can fix (full disk, quota,
read-only, permissions) is raised as a one-line ``StorageError`` naming the target. Only a killed process leaves
its temporary file behind: ``discard_temporary_files`` removes those when a run resumes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mmrec_ray.errors import storage_error

# mkstemp's names: the prefix we give it, 8 characters from its alphabet, our suffix.
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask sets it, which would race with
    other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename tmp_path onto ``path`` (same directory, so rename is atomic)."""
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        writer(tmp_path)
        # Without the flush a crash soon after the rename can leave a 0-byte target on some filesystems.
        _sync(tmp_path)
        # mkstemp creates 0o600; the outputs are meant to be shared like any file the user writes.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
        tmp_path = None
    except OSError as exc:
        error = storage_error(exc, str(path), writing=True)
        if error is None:
            raise
        raise error from exc
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_parquet(path: str | Path, frame) -> Path:
    """Write a pandas DataFrame as Parquet atomically (index dropped)."""
    return atomic_write(path, lambda p: frame.to_parquet(p, index=False))


def atomic_write_npy(path: str | Path, array) -> Path:
    import numpy as np

    def _write(p: Path) -> None:
        with open(p, "wb") as handle:
            np.save(handle, array, allow_pickle=False)

    return atomic_write(path, _write)


def append_line(path: str | Path, line: str) -> None:
    """Append one line to a log file (one write call), a storage failure raised as a ``StorageError``."""
    try:
        with open(path, "a") as handle:
            handle.write(line.rstrip("\n") + "\n")
    except OSError as exc:
        error = storage_error(exc, str(path), writing=True)
        if error is None:
            raise
        raise error from exc


def discard_temporary_files(root: str | Path, skip: Iterable[str] = ()) -> list[Path]:
    """Remove the temporary files of atomic writes that a killed process left under ``root`` (not under the
    top-level folders named in ``skip``). Only safe while no other process writes there."""
    root = Path(root)
    skip = set(skip)
    removed = []
    for directory, folders, files in os.walk(root):
        if Path(directory) == root:
            folders[:] = [f for f in folders if f not in skip]
        for name in files:
            if _TEMPORARY.match(name):
                path = Path(directory) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
