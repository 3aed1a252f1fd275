"""The `analyses` stage: the shuffle study's retraining as Ray tasks, every analysis written, then resumable."""

from __future__ import annotations

import pandas as pd
import pytest

from mmrec_ray.config import ExperimentConfig
from mmrec_ray.pipeline import analyses as stage
from tests.evaluation.analysis_run import RUN_MODELS, build_fitted_run


@pytest.mark.slow
def test_analyses_stage_on_ray_writes_everything_and_resumes(ray_local, tmp_path):
    models = list(RUN_MODELS)
    build_fitted_run(tmp_path, models=models, seeds=(0, 1))
    cfg = ExperimentConfig(name="analyses_stage", run_dir=str(tmp_path), models=models)
    cfg.fit.seeds = [0, 1]
    cfg.training.max_epochs, cfg.training.patience, cfg.training.device = 2, 2, "cpu"
    cfg.analyses.models = ["keyword", "relative_representation"]
    cfg.analyses.tsne_max_points = 50
    cfg.analyses.bootstrap_resamples = 100
    assert set(stage.pending(cfg, tmp_path)) == {"shuffle", "num_events", "tsne", "ablation"}

    lines: list[str] = []
    started = []
    summary = stage.run_analyses(cfg, tmp_path, lines.append, ensure_ray=lambda: started.append(True))
    assert started  # the shuffle study asked for Ray and ran its fits as tasks
    assert any("on Ray" in line for line in lines)
    assert "shuffle" in summary and "ablation" in summary
    shuffled = sorted(p.name for p in (tmp_path / "analyses" / "shuffle" / "predictions").glob("*.parquet"))
    assert shuffled == [
        "keyword__seed0.parquet",
        "keyword__seed1.parquet",
        "relative_representation__seed0.parquet",
        "relative_representation__seed1.parquet",
    ]
    table4 = pd.read_csv(tmp_path / "analyses" / "shuffle" / "table4.csv")
    assert set(table4["model"]) == {"keyword", "relative_representation"} and (table4["n_seeds"] == 2).all()
    assert stage.is_done(cfg, tmp_path)

    # A re-run finds nothing to do; switching an analysis off removes it from the plan.
    before = (tmp_path / "analyses" / "shuffle" / "predictions" / "keyword__seed0.parquet").stat().st_mtime_ns
    assert stage.run_analyses(cfg, tmp_path, lines.append, ensure_ray=None) == "nothing to do"
    after = (tmp_path / "analyses" / "shuffle" / "predictions" / "keyword__seed0.parquet").stat().st_mtime_ns
    assert before == after
    (tmp_path / "analyses" / "ablation" / "ablation.csv").unlink()
    assert stage.pending(cfg, tmp_path) == ["ablation"]
    cfg.analyses.ablation = False
    assert stage.is_done(cfg, tmp_path)
