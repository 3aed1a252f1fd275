"""`prepare` end to end on the hand-made dataset of conftest.py, every tensor checked against hand values."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmrec_ray.cli import main
from mmrec_ray.data.prepare import PrepareOptions, prepare
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.errors import ConfigError

from .conftest import edit, write_tiny_dataset

# Default switches (per_row share, pooled Keyword filter): 51 occurs once, in c100, which two training PEs list:
# 2 of 2030 pooled rows (< 0.1 %), so only the Keyword vocabulary could hold it, and it does not.
VOCAB = [1, 2, 3, 4, 5, 50, 52]


def _onehot(ids):
    return [1 if v in ids else 0 for v in VOCAB]


@pytest.fixture
def prepared(tiny_dataset: Path, tmp_path: Path) -> tuple[PreparedData, dict, Path]:
    run = tmp_path / "run"
    meta = prepare(tiny_dataset, run, log=lambda _: None)
    return PreparedData.load(run / "prepared" / "tensors"), meta, run


def test_events_in_chronological_order(prepared):
    data, _, _ = prepared
    assert data.purchase_event_id.tolist() == list(range(1, 11))
    assert data.user_id.tolist() == [1, 2, 3, 1, 4, 5, 6, 7, 8, 9]
    assert data.conversation_id.tolist() == [100, 101, 102]
    assert data.session_id.tolist() == [10, 11, 12, 13]
    # PE 3's rows are out of order in data_users.csv: session 11 (event 1) must come before conversation 101.
    assert data.event_kind[2].tolist() == [2, 1, 0, 0]
    assert data.event_row[2].tolist() == [1, 1, -1, -1]
    # PE 4: s10, c100, s13, c101.
    assert data.event_kind[3].tolist() == [2, 1, 2, 1]
    assert data.event_row[3].tolist() == [0, 0, 3, 1]
    # Session 12 (tags 6, 88: test only, outside the vocabulary) is emptied by the filter and is not an event
    # (fidelity.vocabulary.empty_sessions: drop): PE 9 keeps c102, PE 10 keeps s10; both keep their subset.
    assert data.n_events.tolist() == [1, 1, 2, 4, 1, 1, 1, 2, 1, 1]
    assert data.event_kind[8].tolist() == [1, 0, 0, 0] and data.event_row[9].tolist() == [0, -1, -1, -1]
    assert data.has_session[8] and data.has_session[9]
    assert (
        data.event_kind.dtype == np.int8
        and data.event_row.dtype == np.int32
        and data.n_events.dtype == np.int16
    )


def test_vocabulary_threshold_and_shared_space(prepared):
    data, meta, _ = prepared
    # 77: 2 of 2020 PE-weighted training action rows (s13 is listed by PEs 4 and 5) is under 0.1 %; 6, 88 and 53
    # occur only in test PEs.
    assert data.vocabulary.tolist() == VOCAB
    assert meta["vocabulary"]["tags"]["dropped_ids"] == [77]
    assert meta["vocabulary"]["pooled"]["dropped_ids"] == [51, 77]
    assert meta["vocabulary"]["shared"] == 1  # id 2 is both a tag and a keyword: one column
    assert meta["drops"]["tags_under_threshold"] == 1
    assert meta["drops"]["tag_occurrences_ignored"] == 3  # 77, 6, 88
    assert meta["drops"]["keyword_occurrences_ignored"] == 2  # 51, 53


def test_session_or_and_conversation_keywords(prepared):
    data, _, _ = prepared
    assert data.session_tags.dtype == np.uint8
    assert data.session_tags.tolist() == [
        _onehot({1, 2, 3}),
        _onehot({2, 4, 5}),
        _onehot(set()),
        _onehot({1}),
    ]
    assert data.conversation_keywords.tolist() == [_onehot({2, 50}), _onehot({50, 52}), _onehot({50})]


def test_conversation_means_and_sentence_weighted_pe_mean(prepared):
    data, meta, _ = prepared
    assert data.conversation_embedding.dtype == np.float32
    np.testing.assert_allclose(data.conversation_embedding, [[2, 1, 0, 0], [0, 2, 2, 0], [2, 2, 2, 2]])
    assert data.conversation_n_sentences.tolist() == [3, 2, 2]
    pe = data.pe_conversation_embedding
    assert pe.shape == (10, 4)
    # PE 4 has c100 (3 sentences, sum [6,3,0,0]) and c101 (2 sentences, sum [0,4,4,0]): mean over 5 sentences,
    # not the mean of the two conversation means ([1, 1.5, 1, 0]).
    np.testing.assert_allclose(pe[3], [1.2, 1.4, 0.8, 0.0], rtol=1e-6)
    np.testing.assert_allclose(pe[1], [2, 1, 0, 0])
    np.testing.assert_allclose(pe[8], [2, 2, 2, 2])
    assert not pe[[0, 4, 6, 7, 9]].any()
    assert meta["embedding_dim"] == 4


def test_targets_post_filter_split_subsets(prepared):
    data, meta, _ = prepared
    assert data.item_ids.tolist() == [2, 5, 7]
    assert data.targets.tolist() == [
        [1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0],
    ]  # fmt: skip
    expected_filter = np.array(
        [[1, 1, 1] if pe in (3, 5, 9) else [1, 1, 0] for pe in range(1, 11)], dtype=bool
    )
    assert np.array_equal(data.post_filter, expected_filter)
    assert data.is_test.tolist() == [False] * 8 + [True, True]
    assert data.subset.tolist() == [2, 1, 3, 3, 2, 1, 2, 2, 3, 2]
    assert data.has_conversation.tolist() == [False, True, True, True, False, True, False, False, True, False]
    assert data.has_session.tolist() == [True, False, True, True, True, False, True, True, True, True]
    assert meta["pe_types"] == {"conversations_only": 2, "sessions_only": 5, "intersection": 3}
    assert meta["num_train"] == 8 and meta["num_test"] == 2


def test_drops_are_counted(prepared):
    _, meta, _ = prepared
    drops = meta["drops"]
    assert drops["sessions_unreferenced"] == 1 and drops["actions_of_unreferenced_sessions"] == 1
    assert drops["conversations_unreferenced"] == 1
    assert drops["keyword_sentences_of_unreferenced_conversations"] == 2
    assert drops["embedding_sentences_of_unreferenced_conversations"] == 2


def test_canonical_parquet(prepared, tiny_dataset: Path):
    _, meta, run = prepared
    parquet = run / "prepared" / "parquet"
    users = pq.read_table(parquet / "users.parquet").to_pandas()
    assert users["session_id"].isna().sum() == 6 and str(users["conversation_id"].dtype) == "Int64"
    sessions = pq.read_table(parquet / "sessions.parquet")
    assert sessions.column("action_tags").to_pylist()[:3] == [[1, 2], [3], [2, 3]]
    keywords = pq.read_table(parquet / "conversation_keywords.parquet")
    assert keywords.column("keywords").to_pylist()[:3] == [[2, 50], [], [51]]
    parts = sorted((parquet / "conversation_embeddings").glob("*.parquet"))
    assert [p.name for p in parts] == ["part-00001.parquet", "part-00002.parquet"]
    second = pq.read_table(parts[1])
    assert second.num_rows == 6
    assert second.column("embedding").to_pylist()[0] == [2.0, 3.0, 0.0, 0.0]
    assert meta["source"] == str(tiny_dataset.resolve())
    assert {f["file"] for f in meta["fingerprint"]["files"]} >= {"data_users.csv", "data_sessions.csv"}


def test_chunked_equals_one_chunk(tiny_dataset: Path, tmp_path: Path):
    # Make the parts long enough that 1 KiB blocks really split them.
    part = tiny_dataset / "data_conversations_embedding" / "data_conversations_embedding_2.csv"
    with open(part, "a") as handle:
        for k in range(3, 300):
            handle.write(f"102,{k},user,{k % 7}.5,{k % 3}.25,0.125,{k % 11}.0\n")
    a = prepare(tiny_dataset, tmp_path / "a", options=PrepareOptions(chunk_bytes=1 << 24), log=lambda _: None)
    b = prepare(tiny_dataset, tmp_path / "b", options=PrepareOptions(chunk_bytes=1024), log=lambda _: None)
    da = PreparedData.load(tmp_path / "a" / "prepared" / "tensors")
    db = PreparedData.load(tmp_path / "b" / "prepared" / "tensors")
    for name in (
        "conversation_embedding",
        "pe_conversation_embedding",
        "conversation_n_sentences",
        "session_tags",
    ):
        assert np.array_equal(getattr(da, name), getattr(db, name)), name
    assert da.conversation_n_sentences.tolist() == [3, 2, 299]
    assert a["fingerprint"] == b["fingerprint"]
    ta = pq.read_table(
        tmp_path / "a" / "prepared" / "parquet" / "conversation_embeddings" / "part-00002.parquet"
    )
    tb = pq.read_table(
        tmp_path / "b" / "prepared" / "parquet" / "conversation_embeddings" / "part-00002.parquet"
    )
    assert ta.equals(tb)


def test_rerun_is_a_no_op_and_force_redoes(tiny_dataset: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    assert main(["prepare", "--data", str(tiny_dataset), "--run-dir", str(run)]) == 0
    tensors = run / "prepared" / "tensors"
    stamp = {p.name: p.stat().st_mtime_ns for p in tensors.iterdir()}
    capsys.readouterr()
    assert main(["prepare", "--data", str(tiny_dataset), "--run-dir", str(run)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in tensors.iterdir()} == stamp
    assert main(["prepare", "--data", str(tiny_dataset), "--run-dir", str(run), "--force"]) == 0
    assert (tensors / "targets.npy").stat().st_mtime_ns != stamp["targets.npy"]


def test_changed_data_needs_force(tiny_dataset: Path, tmp_path: Path, capsys):
    run = tmp_path / "run"
    prepare(tiny_dataset, run, log=lambda _: None)
    edit(tiny_dataset / "data_purchase_events.csv", "10,2\n", "10,5\n")
    with pytest.raises(ConfigError, match="--force"):
        prepare(tiny_dataset, run, log=lambda _: None)
    capsys.readouterr()
    assert main(["prepare", "--data", str(tiny_dataset), "--run-dir", str(run)]) == 2
    assert main(["prepare", "--data", str(tiny_dataset), "--run-dir", str(run), "--force"]) == 0
    assert PreparedData.load(run / "prepared" / "tensors").targets[9].tolist() == [0, 1, 0]


def test_interrupted_run_is_redone(tiny_dataset: Path, tmp_path: Path):
    run = tmp_path / "run"
    prepare(tiny_dataset, run, log=lambda _: None)
    (run / "prepared" / "prepared.json").unlink()  # as if killed before the marker was written
    os.remove(run / "prepared" / "tensors" / "targets.npy")
    meta = prepare(tiny_dataset, run, log=lambda _: None)
    assert meta["status"] == "prepared"
    assert PreparedData.load(run / "prepared" / "tensors").targets.shape == (10, 3)


def test_bad_data_leaves_no_marker(tiny_dataset: Path, tmp_path: Path, capsys):
    edit(
        tiny_dataset / "data_conversations_embedding" / "data_conversations_embedding_2.csv",
        "2.0,3.0",
        "2.0,inf",
    )
    assert main(["prepare", "--data", str(tiny_dataset), "--run-dir", str(tmp_path / "run")]) == 2
    assert "row 2, column 'embedding_2'" in capsys.readouterr().err
    assert not (tmp_path / "run" / "prepared" / "prepared.json").exists()


def test_text_without_embeddings_uses_a_real_encoder(tmp_path: Path):
    """No embedding CSVs, no keyword file: embeddings come from the encoder, keywords from the mapping."""
    from mmrec_ray.embed.encoder import SentenceEncoder
    from mmrec_ray.embed.random_bert import write_random_bert

    from .conftest import TEXT

    root = write_tiny_dataset(tmp_path / "data", embeddings=False, text=True, keywords=False)
    words = " ".join(line.split(",", 3)[3] for line in TEXT.strip().splitlines()[1:])
    encoder_dir = write_random_bert(
        tmp_path / "bert", words=words.split(), hidden_size=32, num_hidden_layers=1
    )
    run = tmp_path / "run"
    code = main(
        [
            "prepare",
            "--data",
            str(root),
            "--out",
            str(run),
            "--encoder",
            str(encoder_dir),
            "--batch-size",
            "3",
        ]
    )
    assert code == 0
    data = PreparedData.load(run / "prepared" / "tensors")
    meta = json.loads((run / "prepared" / "tensors" / "meta.json").read_text())
    assert meta["embedding_dim"] == 32 and meta["embedding_source"]["source"] == "text"

    encoder = SentenceEncoder(str(encoder_dir), device="cpu")
    c100 = encoder.encode(["I want to insure my car", "Of course", "And my house too"])
    c101 = encoder.encode(["How can I help with your claim", "The car was damaged"])
    np.testing.assert_allclose(data.conversation_embedding[0], c100.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        data.pe_conversation_embedding[3], np.vstack([c100, c101]).mean(axis=0), rtol=1e-4, atol=1e-5
    )
    # Only the referenced conversations' 7 sentences were encoded (c103 is never referenced).
    parts = list((run / "prepared" / "parquet" / "conversation_embeddings").glob("part-*.parquet"))
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 7
    # Keywords from the mapping (car=50, house=51, claim=52, travel=53; 53 only in a test conversation).
    assert data.vocabulary.tolist() == VOCAB
    assert data.conversation_keywords.tolist() == [_onehot({50}), _onehot({52, 50}), _onehot(set())]
    assert (run / "prepared" / "parquet" / "conversation_text.parquet").exists()
