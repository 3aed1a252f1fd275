"""Atomic writes: a crash leaves either the old file or the new one, never a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` then rename tmp_path onto ``path`` (same directory, so rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
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
