"""The compiled embedding reader gives exactly what pyarrow's reader gives: values bit for bit, ids, speakers,
rows, and on a row outside its subset the same result or the same one-line error."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from mmrec_ray.data import embedding_csv
from mmrec_ray.data.embedding_csv import find_embedding_parts, iter_embedding_chunks
from mmrec_ray.data.embedding_kernel import exact_float32
from mmrec_ray.data.synthetic_files import generate
from mmrec_ray.errors import DataError

DIM = 6
HEADER = "conversation_id,sentence_number,sentence_speaker," + ",".join(
    f"embedding_{k}" for k in range(1, DIM + 1)
)


def read(parts, reader: str, chunk_bytes: int = 1024) -> dict:
    chunks = list(iter_embedding_chunks(parts, chunk_bytes, use_threads=False, reader=reader))
    for before, after in zip(chunks, chunks[1:]):
        if before.path == after.path:
            assert after.first_row == before.first_row + len(before.conversation_id)
    return {
        "first_row": [c.first_row for c in chunks if c.path == parts[0]][:1],
        "conversation_id": np.concatenate([c.conversation_id for c in chunks]),
        "sentence_number": np.concatenate([c.sentence_number for c in chunks]),
        "speaker": [s for c in chunks for s in c.sentence_speaker.to_pylist()],
        # bits, so that -0.0 / 0.0 and every last place count
        "embedding": np.concatenate([c.embedding for c in chunks]).view(np.uint32),
    }


def assert_same(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key in left:
        assert np.array_equal(np.asarray(left[key]), np.asarray(right[key])), key


@pytest.fixture
def kernel_only(monkeypatch):
    """Fail if the kernel hands any row to pyarrow's reader: these files are inside its subset."""

    def refuse(*args, **kwargs):
        raise AssertionError("the kernel handed over to pyarrow's reader")

    monkeypatch.setattr(embedding_csv, "_arrow_chunks", refuse)


@pytest.mark.parametrize("float_text", ["short", "float32", "release"])
def test_generated_parts_read_the_same(tmp_path: Path, float_text: str, monkeypatch):
    generate(
        tmp_path, scale=0.005, seed=2, text=False, embedding_dim=12, rows_per_part=700, float_text=float_text
    )
    parts = find_embedding_parts(tmp_path)
    assert len(parts) >= 2
    expected = read(parts, "arrow")
    with monkeypatch.context() as patch:
        patch.setattr(embedding_csv, "_arrow_chunks", None)  # a hand-over would fail loudly
        for chunk_bytes in (1024, 1 << 20):
            assert_same(read(parts, "auto", chunk_bytes), expected)


def halfway_texts(rng: np.random.Generator, count: int) -> list[str]:
    """Decimal texts exactly halfway between two float32 neighbours, and a hair either side of it."""
    texts = []
    for value in rng.standard_normal(count).astype(np.float32):
        above = np.nextafter(value, np.float32(np.inf))
        middle = (Fraction(float(value)) + Fraction(float(above))) / 2
        hair = Fraction(1, 10**40)
        for exact in (middle, middle - hair, middle + hair):
            digits = (
                exact.numerator * 10**60 // exact.denominator
            )  # exact: a dyadic middle ends within 60 places
            sign = "-" if digits < 0 else ""
            digits = str(abs(digits)).rjust(61, "0")
            texts.append(f"{sign}{digits[:-60]}.{digits[-60:]}")
    return texts


def write_part(folder: Path, lines: list[str], newline: str = "\n", final_newline: bool = True) -> list[Path]:
    part = folder / "data_conversations_embedding" / "data_conversations_embedding_1.csv"
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes((newline.join([HEADER, *lines]) + (newline if final_newline else "")).encode())
    return [part]


def rows_of(values: list[str], first_id: int = 1) -> list[str]:
    rows, speakers = [], ['"agent"', "customer", '"a, b"', '""']
    for k in range(0, len(values), DIM):
        cells = (values[k : k + DIM] + ["0"] * DIM)[:DIM]
        rows.append(f"{first_id + k // DIM}.0,{k // DIM + 1},{speakers[k // DIM % 4]}," + ",".join(cells))
    return rows


SPECIAL = [
    "5.",
    ".5",
    "-.5",
    "1e5",
    "1E+05",
    "-0",
    "00.5",
    "1e-50",
    "1e-45",
    "7e-46",
    "7.1e-46",
    "3.4028234e38",
    "-3.4028235e38",
    "0.1234567890123456789012345",
    "123456789012345678901234.5",
    "1.17549435e-38",
    "2.5e-39",
    "0.0016904771327972412",
    "-0.013814596459269524",
    "9999999999999999999999",
    "1e-9999",
    "0e0",
    "-0.0e-3",
]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_edge_numbers_round_as_pyarrow_does(tmp_path: Path, kernel_only, newline, final_newline):
    rng = np.random.default_rng(0)
    values = SPECIAL + halfway_texts(rng, 200) + [repr(float(v)) for v in rng.standard_normal(300)]
    parts = write_part(tmp_path, rows_of(values), newline, final_newline)
    got = read(parts, "auto")
    assert got["speaker"][:4] == ["agent", "customer", "a, b", ""]
    assert got["conversation_id"][:2].tolist() == [1, 2]
    expected_values = np.array([exact_float32(v.encode()) for v in values], dtype=np.float32)
    assert np.array_equal(got["embedding"].reshape(-1)[: len(values)], expected_values.view(np.uint32))


def test_edge_numbers_match_pyarrow(tmp_path: Path):
    rng = np.random.default_rng(1)
    parts = write_part(tmp_path, rows_of(SPECIAL + halfway_texts(rng, 200)))
    assert_same(read(parts, "auto"), read(parts, "arrow"))


def test_exact_float32_breaks_ties_to_even():
    one = np.float32(1.0)
    above = np.nextafter(one, np.float32(2))  # odd last bit
    middle = (Fraction(1) + Fraction(float(above))) / 2
    text = str(middle.numerator * 10**30 // middle.denominator)
    assert exact_float32(f"{text[0]}.{text[1:]}".encode()) == one  # the tie goes to the even neighbour
    assert exact_float32(b"-1.5") == np.float32(-1.5)
    assert exact_float32(b"7e-46") == 0 and exact_float32(b"7.1e-46") == np.float32(1e-45)


# A clean part of many blocks, then one row outside the kernel's subset late in it: the result (or the error) is
# the general reader's, with the row numbered in the whole part.
LATE_ROWS = {
    "nan cell": (4, "nan"),
    "empty cell": (2, ""),
    "infinite cell": (5, "1e400"),
    "text cell": (0, "abc"),
    "plus sign": (1, "+0.5"),
    "leading space": (3, " 0.5"),
    "id written 3.5": ("id", "3.5"),
    "id of 20 digits": ("id", "12345678901234567890"),
    "negative id": ("id", "-4"),
    "non-ASCII speaker": ("speaker", '"kundé"'),
    "quoted quote in speaker": ("speaker", '"say ""hi"""'),
    "too few cells": ("cut", ""),
}


@pytest.mark.parametrize("case", list(LATE_ROWS))
def test_a_late_unusual_row_reads_or_fails_as_pyarrow_does(tmp_path: Path, case: str):
    rng = np.random.default_rng(2)
    lines = rows_of([repr(float(v)) for v in rng.standard_normal(DIM * 120)])
    where, text = LATE_ROWS[case]
    cells = lines[100].split(",")
    if where == "id":
        cells[0] = text
    elif where == "speaker":
        cells[2] = text
    elif where == "cut":
        cells = cells[:-2]
    else:
        cells[3 + where] = text
    lines[100] = ",".join(cells)
    parts = write_part(tmp_path, lines)

    def outcome(reader: str):
        try:
            return read(parts, reader)
        except DataError as error:
            return str(error)

    expected, got = outcome("arrow"), outcome("auto")
    if isinstance(expected, str):
        assert got == expected
        assert ", row 102" in expected  # the header is row 1, the unusual line row 102
    else:
        assert_same(got, expected)


def test_a_blank_line_is_skipped_as_pyarrow_skips_it(tmp_path: Path):
    rng = np.random.default_rng(3)
    lines = rows_of([repr(float(v)) for v in rng.standard_normal(DIM * 50)])
    lines.insert(30, "")
    parts = write_part(tmp_path, lines)
    assert_same(read(parts, "auto"), read(parts, "arrow"))


def test_a_header_in_another_order_uses_the_general_reader(tmp_path: Path, monkeypatch):
    part = tmp_path / "data_conversations_embedding" / "data_conversations_embedding_1.csv"
    part.parent.mkdir(parents=True)
    part.write_text("sentence_number,conversation_id,sentence_speaker,embedding_1\n1,7,agent,0.5\n")
    called = []
    original = embedding_csv._arrow_chunks
    monkeypatch.setattr(embedding_csv, "_arrow_chunks", lambda *a, **k: called.append(1) or original(*a, **k))
    (chunk,) = iter_embedding_chunks([part])
    assert called and chunk.conversation_id.tolist() == [7] and chunk.sentence_number.tolist() == [1]


def test_without_numba_parts_are_read_by_pyarrow(tmp_path: Path, monkeypatch):
    import sys

    import mmrec_ray.data

    rng = np.random.default_rng(4)
    parts = write_part(tmp_path, rows_of([repr(float(v)) for v in rng.standard_normal(DIM * 20)]))
    expected = read(parts, "arrow")
    monkeypatch.delattr(mmrec_ray.data, "embedding_kernel", raising=False)
    monkeypatch.setitem(sys.modules, "mmrec_ray.data.embedding_kernel", None)  # its import fails
    embedding_csv._kernel_available.cache_clear()
    try:
        with pytest.warns(UserWarning, match="without the compiled reader"):
            assert_same(read(parts, "auto"), expected)
    finally:
        embedding_csv._kernel_available.cache_clear()


def test_a_converted_part_is_the_same_with_either_reader(tmp_path: Path):
    """Parquet rows and per-conversation float64 sums bit for bit: the kernel adds each conversation's rows while
    parsing, in the order ``np.add.reduceat`` adds them."""
    import pyarrow.parquet as pq

    from mmrec_ray.data.ingest import PartJob, convert_part

    generate(
        tmp_path / "d",
        scale=0.005,
        seed=5,
        text=False,
        embedding_dim=12,
        rows_per_part=900,
        float_text="release",
    )
    part = find_embedding_parts(tmp_path / "d")[0]
    stored = {}
    for reader in ("auto", "arrow"):
        job = PartJob(1, str(part), str(tmp_path / reader), 12, 2048, threads=False, reader=reader)
        convert_part(job)
        with np.load(job.summary) as summary:
            stored[reader] = {key: summary[key] for key in summary.files if key != "identity"}
        stored[reader]["parquet"] = pq.read_table(job.parquet)
    assert stored["auto"]["parquet"].equals(stored["arrow"]["parquet"])
    for key in ("conversation_id", "counts", "sentence_conversation", "sentence_number"):
        assert np.array_equal(stored["auto"][key], stored["arrow"][key]), key
    assert stored["auto"]["sums"].tobytes() == stored["arrow"]["sums"].tobytes()
    assert stored["auto"]["counts"].sum() == len(stored["auto"]["sentence_number"]) > 100
