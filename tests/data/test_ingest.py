"""The embedding CSV ingest (data/ingest.py): parts are independent jobs, any order gives the same result, a
finished part is never converted twice, and a run killed part-way resumes to identical output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmrec_ray.data import ingest
from mmrec_ray.data.embedding_csv import find_embedding_parts
from mmrec_ray.data.prepare import prepare
from mmrec_ray.data.synthetic_files import generate
from mmrec_ray.data.tensors import PreparedData

# 11,246 sentences at scale 0.01, seed 3, 1,600 a part (the fixture re-counts after a generator change)
PARTS = 8


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ingest") / "data"
    generate(out, scale=0.01, seed=3, text=False, embedding_dim=8, rows_per_part=1_600)
    sentences = json.loads((out / "generation_info.json").read_text())["counts"]["sentences"]
    assert len(find_embedding_parts(out)) == PARTS == -(-sentences // 1_600), sentences
    return out


def _conversations(folder: Path) -> np.ndarray:
    ids = np.concatenate(
        [
            np.loadtxt(p, delimiter=",", skiprows=1, usecols=0, dtype=np.int64)
            for p in find_embedding_parts(folder)
        ]
    )
    return np.unique(ids)


def _ingest(
    folder: Path, out: Path, map_parts=None, conversations=None
) -> tuple[ingest.EmbeddingAccumulator, dict]:
    conversations = _conversations(folder) if conversations is None else conversations
    parts = find_embedding_parts(folder)
    return ingest.ingest_parts(parts, out, conversations, 8, 4096, map_parts=map_parts, log=lambda _: None)


def test_parts_in_any_order_give_the_same_sums(folder: Path, tmp_path: Path):
    """What Ray does: parts finish in any order, on any worker; the driver's fold does not depend on it."""
    forward, _ = _ingest(folder, tmp_path / "a")

    def backwards(convert, jobs):
        return [convert(job) for job in reversed(jobs)]

    reverse, _ = _ingest(folder, tmp_path / "b", map_parts=backwards)
    np.testing.assert_allclose(forward.sums, reverse.sums, rtol=0, atol=1e-12)
    assert forward.counts.tolist() == reverse.counts.tolist()
    assert forward.counts.sum() == forward.sentences > 0


def test_sums_match_a_direct_mean(folder: Path, tmp_path: Path):
    acc, _ = _ingest(folder, tmp_path / "out")
    rows = np.concatenate(
        [np.loadtxt(p, delimiter=",", skiprows=1, usecols=[0, 3, 4]) for p in find_embedding_parts(folder)]
    )
    conversation = acc.conversation_ids[5]
    mine = rows[rows[:, 0] == conversation][:, 1:]
    np.testing.assert_allclose(acc.means()[5, :2], mine.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert acc.counts[5] == len(mine)


def test_rows_in_conversation_order_sum_as_rows_in_any_order():
    """The fold's shortcut for a part listing its conversations in order gives what the sorting path gives."""
    rng = np.random.default_rng(0)
    owner = np.sort(rng.integers(0, 40, 500))
    values = rng.standard_normal((500, 7)).astype(np.float32)
    shuffled = rng.permutation(500)
    in_order = ingest._sum_by_owner(owner, values)
    any_order = ingest._sum_by_owner(owner[shuffled], values[shuffled])
    assert np.array_equal(in_order[0], any_order[0]) and np.array_equal(in_order[2], any_order[2])
    np.testing.assert_allclose(in_order[1], any_order[1], rtol=0, atol=1e-12)
    direct = values[owner == in_order[0][3]].astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(in_order[1][3], direct, rtol=0, atol=1e-12)


def test_a_crash_resumes_with_only_the_missing_parts(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    crash_after = 3

    def crashing(convert, jobs):
        for number, job in enumerate(jobs, start=1):
            yield convert(job)
            if number == crash_after:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _ingest(folder, out, map_parts=crashing)
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert len(kept) == crash_after
    converted = []

    def recording(convert, jobs):
        converted.extend(job.number for job in jobs)
        return [convert(job) for job in jobs]

    resumed, report = _ingest(folder, out, map_parts=recording)
    assert converted == list(range(crash_after + 1, PARTS + 1))
    assert (report["converted"], report["reused"]) == (PARTS - crash_after, crash_after)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet") if p.name in kept} == kept
    whole, _ = _ingest(folder, tmp_path / "whole")
    np.testing.assert_array_equal(resumed.sums, whole.sums)
    np.testing.assert_array_equal(resumed.counts, whole.counts)


def test_a_changed_part_is_converted_again(folder: Path, tmp_path: Path):
    copy = tmp_path / "data"
    subprocess.run(["cp", "-r", str(folder), str(copy)], check=True)
    out = tmp_path / "out"
    _ingest(copy, out)
    part = find_embedding_parts(copy)[1]
    lines = part.read_text().splitlines(keepends=True)
    cells = lines[1].split(",")
    cells[3] = "9.5"  # a different first value: same part, new bytes
    lines[1] = ",".join(cells)
    part.write_text("".join(lines))
    _, report = _ingest(copy, out)
    assert (report["converted"], report["reused"]) == (1, PARTS - 1)


def test_outputs_of_parts_that_no_longer_exist_are_removed(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    _ingest(folder, out)
    (out / f"part-{PARTS + 1:05d}.parquet").write_bytes(b"old")
    (out / f"_part-{PARTS + 1:05d}.summary.npz").write_bytes(b"old")
    (out / ".part-00001.parquet.abc.tmp").write_bytes(b"torn")
    _, report = _ingest(folder, out)
    assert report["converted"] == 0
    assert sorted(p.name for p in out.glob("part-*")) == [
        f"part-{n:05d}.parquet" for n in range(1, PARTS + 1)
    ]
    assert not list(out.glob(".*"))


def test_a_torn_summary_is_redone(folder: Path, tmp_path: Path):
    out = tmp_path / "out"
    _ingest(folder, out)
    (out / "_part-00002.summary.npz").write_bytes(b"PK\x03\x04 cut short")
    _, report = _ingest(folder, out)
    assert (report["converted"], report["reused"]) == (1, PARTS - 1)


@pytest.mark.parametrize(
    ("workers", "total_bytes", "parts", "parallel"),
    [
        ("auto", 10 << 20, 8, False),
        ("auto", 2 << 30, 8, True),
        ("auto", 2 << 30, 1, False),
        (1, 2 << 30, 8, False),
        (4, 10 << 20, 8, True),
    ],
)
def test_one_decision_between_this_process_and_ray(tmp_path: Path, workers, total_bytes, parts, parallel):
    paths = []
    for number in range(parts):
        path = tmp_path / f"part_{number}.csv"
        with open(path, "wb") as handle:
            handle.truncate(total_bytes // parts)  # sparse: no disk used
        paths.append(path)
    assert ingest.use_parallel(paths, workers) is parallel


def test_prepare_reuses_converted_parts_when_rebuilt(folder: Path, tmp_path: Path):
    """A rebuild (--force, or other fidelity switches) redoes the tensors, not 210 GB of CSV parsing."""
    run = tmp_path / "run"
    first = prepare(folder, run, log=lambda _: None)
    assert first["embedding_source"]["ingest"]["converted"] == PARTS
    again = prepare(folder, run, force=True, log=lambda _: None)
    assert again["embedding_source"]["ingest"] == {
        **again["embedding_source"]["ingest"],
        "converted": 0,
        "reused": PARTS,
    }
    a = PreparedData.load(run / "prepared" / "tensors")
    b = PreparedData.load(run / "prepared" / "tensors")
    np.testing.assert_array_equal(a.conversation_embedding, b.conversation_embedding)


def _tensors(run: Path) -> PreparedData:
    return PreparedData.load(run / "prepared" / "tensors")


@pytest.mark.slow
def test_kill_9_mid_ingest_resumes_to_identical_output(tmp_path: Path):
    """A real kill -9 of `mmrec prepare` while it converts parts; the re-run converts only what is missing."""
    data = tmp_path / "data"
    generate(data, scale=0.02, seed=1, text=False, embedding_dim=64, rows_per_part=600, float_text="release")
    parts = len(find_embedding_parts(data))
    assert parts >= 10
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "mmrec_ray.cli", "prepare", "--data", str(data), "--ingest-workers", "1"]
    run = tmp_path / "killed"
    partial = run / "prepared" / "parquet" / "conversation_embeddings.partial"
    process = subprocess.Popen(
        [*command, "--run-dir", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(partial.glob("_part-*.summary.npz"))) < 2:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_at_kill = len(list(partial.glob("_part-*.summary.npz")))
    assert 2 <= done_at_kill < parts, f"the kill landed after {done_at_kill} of {parts} parts"
    resumed = subprocess.run(
        [*command, "--run-dir", str(run)], env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done_at_kill} of {parts} part(s) already converted" in resumed.stdout
    assert resumed.stdout.count("converted (") == parts - done_at_kill

    clean = tmp_path / "clean"
    subprocess.run([*command, "--run-dir", str(clean)], env=env, check=True, capture_output=True, timeout=300)
    a, b = _tensors(run), _tensors(clean)
    np.testing.assert_array_equal(a.conversation_embedding, b.conversation_embedding)
    np.testing.assert_array_equal(a.pe_conversation_embedding, b.pe_conversation_embedding)
    np.testing.assert_array_equal(a.conversation_n_sentences, b.conversation_n_sentences)
    import pyarrow.parquet as pq

    final = "prepared/parquet/conversation_embeddings"
    assert (
        pq.read_table(run / final)
        .sort_by("conversation_id")
        .equals(pq.read_table(clean / final).sort_by("conversation_id"))
    )
