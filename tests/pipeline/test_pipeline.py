"""The whole pipeline on the tiny config, on a local Ray: end to end, re-run does nothing, fit resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mmrec_ray.config import load_config
from mmrec_ray.pipeline.runner import run_pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_end_to_end_rerun_and_resume(ray_local, tmp_path):
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={tmp_path / 'run'}"])
    lines: list[str] = []
    run_dir = run_pipeline(cfg, log=lines.append)

    predictions = sorted((run_dir / "predictions").glob("*.parquet"))
    assert {p.name for p in predictions} == {
        f"{m}__seed{s}.parquet" for m in cfg.models for s in cfg.fit.seeds
    }
    frame = pd.read_parquet(predictions[0])
    assert list(frame.columns) == ["model", "seed", "purchase_event_id", "item_id", "score"]
    assert (run_dir / "tune" / "best_configs.yaml").exists()
    trials = pd.read_csv(run_dir / "tune" / "trials.csv")
    assert set(trials["model"]) >= {"conversation", "session", "keyword"}
    assert (run_dir / "results" / "table3.md").exists()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["versions"]["ray"] == "2.60.0"
    assert manifest["fit_seeds"] == [0, 1] and manifest["data_fingerprint"]
    assert set(manifest["stages"]) >= {"prepare", "tune", "fit", "aggregate"}

    # Re-running a finished run recomputes nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "ray" not in p.parts}
    lines.clear()
    run_pipeline(cfg, log=lines.append)
    stage_lines = [line for line in lines if line.startswith("[")]
    assert stage_lines and all(" skipped " in line for line in stage_lines), stage_lines
    for path, mtime in mtimes.items():
        if path.name not in {"manifest.json", "config.yaml", "stages.log"}:
            assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"

    # An interrupted fit (one seed's outputs missing) resumes: only that is redone.
    missing = run_dir / "predictions" / "late_fusion__seed1.parquet"
    missing.unlink()
    kept = run_dir / "predictions" / "conversation__seed0.parquet"
    kept_mtime = kept.stat().st_mtime_ns
    lines.clear()
    run_pipeline(cfg, log=lines.append)
    assert missing.exists()
    assert kept.stat().st_mtime_ns == kept_mtime
    assert any(line.startswith("[fit] done") for line in lines)
    assert any(line.startswith("[tune] skipped") for line in lines)
