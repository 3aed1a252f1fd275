"""`mmrec prepare` with its embedding CSV parts converted by Ray Data tasks (pipeline/ingest.py): the same
output as one process, and a bad cell found by a worker is still one line naming file, row and column."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmrec_ray.data.embedding_csv import find_embedding_parts
from mmrec_ray.data.synthetic_files import generate
from mmrec_ray.data.tensors import PreparedData

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray_ingest") / "data"
    generate(out, scale=0.01, seed=5, text=False, embedding_dim=16, rows_per_part=2_000)
    assert len(find_embedding_parts(out)) >= 4
    return out


def _prepare(data: Path, run: Path, workers: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mmrec_ray.cli", "prepare", "--data", str(data), "--run-dir", str(run)]
    return subprocess.run(
        [*command, "--ingest-workers", workers], capture_output=True, text=True, timeout=300
    )


def test_ray_tasks_give_the_output_of_one_process(folder: Path, tmp_path: Path):
    parallel = _prepare(folder, tmp_path / "parallel", "2")
    assert parallel.returncode == 0, parallel.stderr
    assert "in parallel on Ray" in parallel.stdout
    single = _prepare(folder, tmp_path / "single", "1")
    assert single.returncode == 0, single.stderr
    assert "in this process" in single.stdout
    a = PreparedData.load(tmp_path / "parallel" / "prepared" / "tensors")
    b = PreparedData.load(tmp_path / "single" / "prepared" / "tensors")
    np.testing.assert_array_equal(a.conversation_embedding, b.conversation_embedding)
    np.testing.assert_array_equal(a.pe_conversation_embedding, b.pe_conversation_embedding)
    parts = "prepared/parquet/conversation_embeddings"
    assert sorted(p.name for p in (tmp_path / "parallel" / parts).iterdir()) == sorted(
        p.name for p in (tmp_path / "single" / parts).iterdir()
    )
    assert pq.read_table(tmp_path / "parallel" / parts).equals(pq.read_table(tmp_path / "single" / parts))


def test_a_bad_cell_in_a_worker_is_one_line(folder: Path, tmp_path: Path):
    data = tmp_path / "data"
    subprocess.run(["cp", "-r", str(folder), str(data)], check=True)
    part = find_embedding_parts(data)[2]
    lines = part.read_text().splitlines(keepends=True)
    cells = lines[9].split(",")
    cells[5] = "abc"
    lines[9] = ",".join(cells)
    part.write_text("".join(lines))
    result = _prepare(data, tmp_path / "run", "2")
    assert result.returncode == 2, result.stderr
    error = result.stderr.strip().splitlines()
    assert len(error) == 1, result.stderr
    assert part.name in error[0] and "row 10" in error[0] and "embedding_3" in error[0], error[0]
    assert "Traceback" not in result.stderr
