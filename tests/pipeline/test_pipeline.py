"""The whole pipeline on the tiny config, on a local Ray: end to end (with text, so the Ray Data embed stage
runs), re-run does nothing, fit resumes. The text-free path (embedding CSVs) runs in test_job_submit.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.config import load_config
from mmrec_ray.data.synthetic_files import generate
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.embed.encoder import SentenceEncoder
from mmrec_ray.embed.random_bert import write_random_bert
from mmrec_ray.embed.stage_output import MANIFEST, OUTPUT_DIR
from mmrec_ray.pipeline.runner import run_pipeline

REPO = Path(__file__).resolve().parents[2]


def _text_data_and_encoder(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """Tiny synthetic data with text, and a random BERT whose vocabulary covers that text (fast to run)."""
    data_dir = tmp_path / "data"
    generate(data_dir, scale=0.01, seed=0, text=True)
    text = pd.read_csv(data_dir / "data_conversations_text.csv")
    words = sorted({w for sentence in text["text"] for w in str(sentence).lower().split()})
    encoder = write_random_bert(tmp_path / "bert", words=words, hidden_size=16, num_attention_heads=2, seed=3)
    return data_dir, encoder, text


@pytest.mark.slow
def test_tiny_end_to_end_rerun_and_resume(ray_local, tmp_path):
    data_dir, encoder, text = _text_data_and_encoder(tmp_path)
    overrides = [f"run_dir={tmp_path / 'run'}", f"data.path={data_dir}", "data.text=true"]
    overrides += [f"embed.encoder={encoder}", "embed.batch_size=64", "embed.max_length=32"]
    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides)
    lines: list[str] = []
    run_dir = run_pipeline(cfg, log=lines.append)

    # The Ray Data embed stage ran, and the tensors were built from its parts: a conversation's vector is the
    # mean of its sentences' embeddings by the same encoder in-process.
    assert any(line.startswith("[embed] done") for line in lines), lines
    manifest = json.loads((run_dir / OUTPUT_DIR / MANIFEST).read_text())
    assert manifest["sentences"] == len(text) and manifest["inputs"]["encoder"] == str(encoder)
    assert not (run_dir / OUTPUT_DIR.parent / "conversation_embeddings.partial").exists()
    data = PreparedData.load(run_dir / "prepared" / "tensors")
    assert data.meta["embedding_source"]["source"] == "embed-stage"
    in_process = SentenceEncoder(str(encoder), max_length=32)
    for row in [0, len(data.conversation_id) // 2, len(data.conversation_id) - 1]:
        sentences = text[text["conversation_id"] == data.conversation_id[row]]["text"].tolist()
        expected = in_process.encode(sentences).mean(axis=0)
        np.testing.assert_allclose(data.conversation_embedding[row], expected, atol=1e-5)

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
    assert set(manifest["stages"]) >= {"prepare", "embed", "tensors", "tune", "fit", "aggregate"}

    # Re-running a finished run recomputes nothing.
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file() and "ray" not in p.parts}
    lines.clear()
    run_pipeline(cfg, log=lines.append)
    stage_lines = [line for line in lines if line.startswith("[")]
    assert stage_lines and all(" skipped " in line for line in stage_lines), stage_lines
    for path, mtime in mtimes.items():
        if path.name not in {"manifest.json", "config.yaml", "stages.log"}:
            assert path.stat().st_mtime_ns == mtime, f"{path} was rewritten"

    # An interrupted fit (one seed's outputs missing) resumes: only that is redone. (Analyses off: they would
    # only redo their own work on the new predictions.)
    cfg.analyses.enabled = False
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


def test_synthetic_run_refuses_a_foreign_or_mismatched_data_folder(tmp_path):
    """data.source=synthetic reuses data.path only when the generator wrote it with the configured settings."""
    from mmrec_ray.errors import ConfigError
    from mmrec_ray.pipeline.runner import Pipeline

    data_dir = tmp_path / "data"
    generate(data_dir, scale=0.01, seed=0, text=False, embedding_dim=16)

    def pipeline(*extra):
        overrides = [f"run_dir={tmp_path / 'run'}", f"data.path={data_dir}", *extra]
        return Pipeline(load_config(REPO / "configs" / "tiny.yaml", overrides), log=lambda _line: None)

    pipeline().generate()  # same settings as tiny.yaml: reused, not regenerated
    with pytest.raises(ConfigError, match=r"scale 0.01 \(config: 0.02\)"):
        pipeline("data.scale=0.02").generate()
    with pytest.raises(ConfigError, match=r"text False \(config: True\)"):
        pipeline("data.text=true").generate()
    (data_dir / "generation_info.json").unlink()  # e.g. data.path names a folder of real, released data
    with pytest.raises(ConfigError, match="did not write"):
        pipeline().generate()
