import time

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mmrec_ray.embed.encoder import SentenceEncoder
from mmrec_ray.embed.random_bert import write_random_bert
from mmrec_ray.errors import MmrecError
from mmrec_ray.pipeline import embed as stage

WORDS = "i want to report a claim for my car after an accident yes thank you the travel insurance price family trip".split()


def _text_frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        length = int(rng.integers(1, 25))
        rows.append(
            (
                i // 6 + 1,
                i % 6 + 1,
                "user" if i % 2 else "agent",
                " ".join(rng.choice(WORDS, size=length)),
            )
        )
    return pd.DataFrame(rows, columns=["conversation_id", "sentence_number", "sentence_speaker", "text"])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return write_random_bert(tmp_path_factory.mktemp("bert"), words=WORDS, seed=1)


@pytest.fixture()
def run_dir(tmp_path):
    text = tmp_path / "run" / stage.DEFAULT_TEXT
    text.parent.mkdir(parents=True)
    _text_frame().to_parquet(text, index=False)
    return tmp_path / "run"


@pytest.mark.slow
def test_ray_embeddings_equal_in_process_and_rerun_overwrites(
    ray_local, tiny_bert, run_dir, tmp_path, capfd, recwarn
):
    mapping = tmp_path / "keyword_mapping.csv"
    mapping.write_text("word,keyword_id\nclaim,17\ncar,4\ntravel,31\n")
    summary = stage.run_embed(
        run_dir, encoder=str(tiny_bert), batch_size=8, actor_batch_size=20, keyword_mapping=mapping
    )
    frame = _text_frame()
    assert summary.sentences == len(frame) and summary.dim == 32 and not summary.skipped
    conversation_id, sentence_number, embedding = stage.read_embeddings(summary.output_dir)
    expected = SentenceEncoder(str(tiny_bert)).encode(frame["text"].tolist())
    np.testing.assert_array_equal(conversation_id, frame["conversation_id"])
    np.testing.assert_array_equal(sentence_number, frame["sentence_number"])
    np.testing.assert_allclose(embedding, expected, atol=1e-5)

    parts = sorted(p.name for p in (run_dir / stage.OUTPUT_DIR).glob("*.parquet"))
    assert parts and parts[0] == "part-00001.parquet" and all(p.startswith("part-") for p in parts)
    table = pq.read_table(summary.output_dir).to_pandas().sort_values(["conversation_id", "sentence_number"])
    assert set(table.columns) >= {"sentence_speaker", "keywords", "num_tokens"}
    assert table["sentence_speaker"].tolist() == frame["sentence_speaker"].tolist()
    has_claim = frame["text"].str.contains(r"\bclaim\b").to_numpy()
    assert [17 in list(k) for k in table["keywords"]] == has_claim.tolist()

    # unchanged inputs: skipped; forced: recomputed into the same folder, not appended
    assert stage.run_embed(run_dir, encoder=str(tiny_bert), keyword_mapping=mapping).skipped
    again = stage.run_embed(  # threads_per_actor=-1: the actor encodes on all of this machine's cores
        run_dir,
        encoder=str(tiny_bert),
        batch_size=8,
        keyword_mapping=mapping,
        force=True,
        threads_per_actor=-1,
    )
    assert not again.skipped
    assert pq.read_table(again.output_dir).num_rows == len(frame)
    # changed text: recomputed without force, old rows gone
    _text_frame(n=30, seed=5).to_parquet(run_dir / stage.DEFAULT_TEXT, index=False)
    third = stage.run_embed(run_dir, encoder=str(tiny_bert), batch_size=8)
    assert not third.skipped and pq.read_table(third.output_dir).num_rows == 30
    leftovers = [p.name for p in (run_dir / stage.OUTPUT_DIR).parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    # Ray's C++ core worker writes to the driver's stderr directly; none of it belongs on the console.
    assert "core_worker.cc" not in capfd.readouterr().err
    assert not [w for w in recwarn if "ray_remote_args" in str(w.message)]  # printed on every demo run before


@pytest.mark.slow
def test_gpu_request_on_cpu_only_ray_fails_fast(ray_local, tiny_bert, run_dir):
    started = time.perf_counter()
    with pytest.raises(MmrecError, match=r"1 GPU\(s\), but the Ray cluster has 0 GPU"):
        stage.run_embed(run_dir, encoder=str(tiny_bert), num_gpus=1)
    assert time.perf_counter() - started < 60
    assert not (run_dir / stage.OUTPUT_DIR).exists()


def test_cpu_actor_threads(monkeypatch):
    monkeypatch.setattr(stage.os, "cpu_count", lambda: 8)
    assert stage.actor_threads(1.0) == 1 and stage.actor_threads(2.5) == 2  # the reservation
    assert stage.actor_threads(1.0, 3) == 3  # explicit
    assert stage.actor_threads(1.0, -1) == 8 and stage.actor_threads(1.0, -1, num_actors=3) == 2  # the cores
    with pytest.raises(MmrecError, match="threads_per_actor"):
        stage.actor_threads(1.0, -2)


@pytest.mark.slow
def test_csv_text_input_and_missing_column(ray_local, tiny_bert, run_dir, tmp_path):
    from mmrec_ray.errors import DataError

    csv = tmp_path / "data_conversations_text.csv"
    _text_frame(n=12).to_csv(csv, index=False)
    summary = stage.run_embed(run_dir, text=csv, encoder=str(tiny_bert))
    assert summary.sentences == 12
    bad = tmp_path / "bad.csv"
    _text_frame(n=3).drop(columns=["text"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="column 'text'"):
        stage.run_embed(run_dir, text=bad, encoder=str(tiny_bert), force=True)
    # Ids as the released files write them (floats such as 3.0) are read exactly; a fractional id is one line
    # naming row and column, raised on the driver (not a pyarrow error wrapped by a Ray task).
    floats = _text_frame(n=6)
    floats["conversation_id"] = floats["conversation_id"].astype(float)
    floats.to_csv(csv, index=False)
    assert stage.run_embed(run_dir, text=csv, encoder=str(tiny_bert), force=True).sentences == 6
    floats["sentence_number"] = floats["sentence_number"].astype(float)
    floats.loc[4, "sentence_number"] = 2.5
    floats.to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"row 6, column 'sentence_number'"):
        stage.run_embed(run_dir, text=bad, encoder=str(tiny_bert), force=True)
