"""RUN_DIR/manifest.json: what produced a run — versions, git commit, seeds, data fingerprint, stage timings.

The manifest is rewritten (atomically) after every stage, so an interrupted run still says what it finished.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from mmrec_ray.config import ExperimentConfig, dump_config
from mmrec_ray.io import atomic_write_json, atomic_write_text

PACKAGES = ("torch", "ray", "transformers", "numpy", "pandas", "pyarrow", "scipy", "statsmodels")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(directory: str | Path | None = None) -> str | None:
    """HEAD of the checkout the code runs from (plus "-dirty" with uncommitted changes); None outside git."""
    directory = Path(directory or Path(__file__).resolve().parents[2])
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def data_fingerprint(tensors_dir: str | Path) -> str | None:
    """The prepared data's own fingerprint (meta.json) or, failing that, a hash of meta.json's bytes."""
    meta_path = Path(tensors_dir) / "meta.json"
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    for key in ("fingerprint", "data_fingerprint"):
        if isinstance(meta.get(key), str):
            return meta[key]
    return "sha256:" + hashlib.sha256(meta_path.read_bytes()).hexdigest()


class Manifest:
    """Accumulates stage timings and writes RUN_DIR/manifest.json and RUN_DIR/config.yaml."""

    def __init__(self, run_dir: str | Path, cfg: ExperimentConfig):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        path = self.run_dir / "manifest.json"
        try:
            previous = json.loads(path.read_text()) if path.exists() else {}
        except (
            ValueError
        ):  # cut short (a full disk, a crash before writes were synced): only timings are lost
            previous = {}
        self.stages: dict[str, dict[str, Any]] = (
            previous.get("stages", {}) if isinstance(previous, dict) else {}
        )

    def write_config(self) -> Path:
        return atomic_write_text(self.run_dir / "config.yaml", dump_config(self.cfg))

    def record(self, stage: str, status: str, seconds: float, fingerprint: str | None = None) -> None:
        """A stage's outcome. A skip keeps the record of the execution that wrote the outputs (its timing and
        fingerprint) and only notes when it was last found current; a new execution keeps earlier timings."""
        previous = self.stages.get(stage) or {}
        now = time.time()
        if status == "skipped" and previous.get("status") == "done":
            previous["checked_at"] = now
            if fingerprint:
                previous["fingerprint"] = fingerprint
        else:
            earlier = list(previous.pop("earlier", []))
            if previous.get("status") == "done":
                earlier.append({k: previous[k] for k in ("seconds", "finished_at") if k in previous})
            previous = {"status": status, "seconds": round(seconds, 3), "finished_at": now}
            if fingerprint:
                previous["fingerprint"] = fingerprint
            if earlier:
                previous["earlier"] = earlier[-5:]
        self.stages[stage] = previous
        self.write()

    def forget(self, stages: list[str]) -> None:
        """Stages whose outputs were removed (``--from``): their fingerprints no longer describe anything."""
        for stage in stages:
            record = self.stages.get(stage)
            if record:
                record.pop("fingerprint", None)
                record["status"] = "removed"
        self.write()

    def write(self) -> Path:
        manifest = {
            "name": self.cfg.name,
            "run_dir": self.cfg.run_dir,
            "versions": package_versions(),
            "platform": platform.platform(),
            "git_commit": git_commit(),
            "seed": self.cfg.seed,
            "fit_seeds": list(self.cfg.fit.seeds),
            "data_seed": self.cfg.data.seed,
            "models": list(self.cfg.models),
            "data_fingerprint": data_fingerprint(self.run_dir / "prepared" / "tensors"),
            "stages": self.stages,
        }
        return atomic_write_json(self.run_dir / "manifest.json", manifest)
