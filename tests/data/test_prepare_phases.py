"""`prepare` in two phases around the embed stage: canonical Parquet first, tensors from the stage's parts.

The stage's output is written here the way `mmrec_ray.pipeline.embed` writes it (parts + manifest, the manifest
naming the text file's fingerprint), so these tests need no Ray; the real stage runs in tests/pipeline.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmrec_ray.data.prepare import PrepareOptions, prepare
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.embed.stage_output import MANIFEST, OUTPUT_DIR, TEXT_FILE, file_fingerprint
from mmrec_ray.errors import DataError
from tests.data.conftest import write_tiny_dataset

STAGE = PrepareOptions(embeddings="embed-stage")


def _fake_stage_output(run: Path, dim: int = 4, seed: int = 0) -> dict[int, np.ndarray]:
    """Parts (two, to check they are all read) + manifest; returns each conversation's sentence vectors."""
    text = pq.read_table(run / TEXT_FILE).to_pandas()
    vectors = np.random.default_rng(seed).normal(size=(len(text), dim)).astype(np.float32)
    out = run / OUTPUT_DIR
    out.mkdir(parents=True)
    halves = np.array_split(np.arange(len(text)), 2)
    for number, rows in enumerate(halves, start=1):
        table = pa.table(
            {
                "conversation_id": pa.array(text["conversation_id"].to_numpy()[rows], pa.int64()),
                "sentence_number": pa.array(text["sentence_number"].to_numpy()[rows], pa.int64()),
                "sentence_speaker": pa.array(text["sentence_speaker"].to_numpy()[rows], pa.string()),
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors[rows].reshape(-1)), dim),
            }
        )
        pq.write_table(table, out / f"part-{number:05d}.parquet")
    inputs = {"encoder": "test", "max_length": 8, "text": file_fingerprint(run / TEXT_FILE)}
    (out / MANIFEST).write_text(json.dumps({"inputs": inputs, "sentences": len(text), "dim": dim}))
    return {c: vectors[text["conversation_id"].to_numpy() == c] for c in text["conversation_id"].unique()}


def test_canonical_phase_then_tensors_from_the_embed_stage(tmp_path):
    root = write_tiny_dataset(tmp_path / "data", embeddings=False, text=True, keywords=False)
    run = tmp_path / "run"
    first = prepare(root, run, canonical_only=True, log=lambda _: None)
    assert first == {"status": "canonical", "needs_embeddings": True}
    assert (run / TEXT_FILE).exists() and not (run / "prepared" / "tensors").exists()
    assert prepare(root, run, canonical_only=True, log=lambda _: None)["status"] == "up-to-date"

    # Without the stage's complete output, phase 2 refuses (it never falls back to half-written parts).
    with pytest.raises(DataError, match="no complete output of the embed stage"):
        prepare(root, run, options=STAGE, log=lambda _: None)

    sentences = _fake_stage_output(run)
    # A leftover of an interrupted in-process encoding is removed, never mixed in.
    leftover = run / OUTPUT_DIR.parent / "conversation_embeddings.partial"
    leftover.mkdir()
    (leftover / "part-00001.parquet").write_bytes(b"stale")
    meta = prepare(root, run, options=STAGE, log=lambda _: None)
    assert meta["status"] == "prepared" and meta["embedding_source"]["source"] == "embed-stage"
    assert meta["embedding_source"]["parts"] == 2 and not leftover.exists()
    data = PreparedData.load(run / "prepared" / "tensors")
    for row, conversation in enumerate(data.conversation_id):
        expected = sentences[conversation].mean(axis=0)
        np.testing.assert_allclose(data.conversation_embedding[row], expected, rtol=1e-5, atol=1e-6)
    assert prepare(root, run, options=STAGE, log=lambda _: None)["status"] == "up-to-date"


def test_embeddings_of_another_text_version_are_refused(tmp_path):
    root = write_tiny_dataset(tmp_path / "data", embeddings=False, text=True, keywords=False)
    run = tmp_path / "run"
    prepare(root, run, canonical_only=True, log=lambda _: None)
    _fake_stage_output(run)
    text = run / TEXT_FILE
    os.utime(text, (text.stat().st_atime, text.stat().st_mtime + 10))  # rewritten after the stage ran
    with pytest.raises(DataError, match="another version of conversation_text.parquet"):
        prepare(root, run, options=STAGE, log=lambda _: None)


def test_incomplete_parts_are_refused(tmp_path):
    root = write_tiny_dataset(tmp_path / "data", embeddings=False, text=True, keywords=False)
    run = tmp_path / "run"
    prepare(root, run, canonical_only=True, log=lambda _: None)
    _fake_stage_output(run)
    (run / OUTPUT_DIR / "part-00002.parquet").unlink()
    with pytest.raises(DataError, match="but the embed manifest counts"):
        prepare(root, run, options=STAGE, log=lambda _: None)
