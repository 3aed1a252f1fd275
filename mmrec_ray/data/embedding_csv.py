"""The embedding CSV parts of the released format (``data_conversations_embedding/*.csv``), one part at a time.

A part has ``conversation_id, sentence_number, sentence_speaker, embedding_1 .. embedding_D``; the release's are
about 1.96 GB each (107 of them). ``iter_embedding_chunks`` streams a part block by block with
``pyarrow.csv.open_csv`` and validates each block as it goes (exact integer ids, finite numbers), so memory holds
one block, never a part. Running many parts at once is ``ingest``'s job.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from mmrec_ray.data.csvparse import (
    FIRST_DATA_ROW,
    integer_problem,
    iter_records,
    locate_parse_problem,
    parse_ids,
    read_header,
    require_columns,
    show_cell,
)
from mmrec_ray.errors import DataError

EMBEDDING_DIR = "data_conversations_embedding"
EMBEDDING_KEY_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker")
# ~4 MB of text per block; pyarrow holds ~40x this while parsing wide rows
DEFAULT_CHUNK_BYTES = 4 << 20
_EMBEDDING_COLUMN = re.compile(r"^embedding_(\d+)$")
_PART_NUMBER = re.compile(r"(\d+)\.csv$")


# --------------------------------------------------------------------------------------------------- embeddings
def find_embedding_parts(root: Path) -> list[Path]:
    """The embedding CSV parts, sorted by their part number (``..._2.csv`` before ``..._10.csv``)."""
    folder = root / EMBEDDING_DIR
    if not folder.is_dir():
        return []

    def part_key(path: Path):
        match = _PART_NUMBER.search(path.name)
        return (int(match.group(1)) if match else math.inf, path.name)

    return sorted((p for p in folder.iterdir() if p.suffix == ".csv" and p.is_file()), key=part_key)


def embedding_columns(path: Path) -> tuple[list[str], list[str]]:
    """(header, embedding column names in order embedding_1..embedding_D) after checking the header."""
    header = read_header(path)
    require_columns(path, header, EMBEDDING_KEY_COLUMNS)
    numbers = sorted(int(m.group(1)) for m in (_EMBEDDING_COLUMN.match(c) for c in header) if m)
    if not numbers:
        raise DataError(
            path, "no embedding columns (expected embedding_1 ... embedding_D)", row=1, column="embedding_1"
        )
    for expected, found in enumerate(numbers, start=1):
        if expected != found:
            raise DataError(
                path,
                f"missing column (found embedding_1..embedding_{numbers[-1]} with a gap)",
                row=1,
                column=f"embedding_{expected}",
            )
    return header, [f"embedding_{k}" for k in numbers]


def embedding_dim_of_parts(parts: Sequence[Path]) -> int | None:
    """The common width D of all parts; parts of different widths are an error."""
    dim, first = None, None
    for part in parts:
        _, columns = embedding_columns(part)
        if dim is None:
            dim, first = len(columns), part
        elif len(columns) != dim:
            raise DataError(
                part,
                f"{len(columns)} embedding columns, but {first.name} has {dim}: all parts must have the same width",
                row=1,
                column=f"embedding_{min(dim, len(columns)) + 1}",
            )
    return dim


@dataclass
class EmbeddingChunk:
    """One streamed block of an embedding part."""

    path: Path
    first_row: int  # spreadsheet row of the chunk's first line
    conversation_id: np.ndarray  # (n,) int64
    sentence_number: np.ndarray  # (n,) int64
    sentence_speaker: pa.Array  # (n,) string
    embedding: np.ndarray  # (n, D) float32


def _locate_bad_embedding_cell(
    path: Path, header: list[str], columns: Sequence[str], arrow_message: str
) -> DataError:
    """Find the first malformed row or bad cell with the standard library (error path only)."""
    keys = [(header.index(c), c) for c in ("conversation_id", "sentence_number")]
    values = [(header.index(c), c) for c in columns]
    try:
        for row, cells in iter_records(path, header, len(header)):
            if row == 1 or not cells:
                continue
            for position, name in keys:
                cell = cells[position].strip()
                problem = integer_problem(cell) if cell else "is empty: a number is required"
                if problem:
                    return DataError(path, f"{show_cell(cell)} {problem}", row=row, column=name)
            for position, name in values:
                cell = cells[position].strip()
                if not cell:
                    return DataError(path, "empty embedding cell", row=row, column=name)
                try:
                    value = float(cell)
                except ValueError:
                    return DataError(path, f"{show_cell(cell)} is not a number", row=row, column=name)
                if not math.isfinite(value):
                    return DataError(path, f"{show_cell(cell)} is not a finite number", row=row, column=name)
    except DataError as error:
        return error
    return locate_parse_problem(path, header, arrow_message)


def iter_embedding_chunks(
    parts: Sequence[Path],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    dim: int | None = None,
    *,
    use_threads: bool = True,
) -> Iterator[EmbeddingChunk]:
    """Stream every part in blocks of about ``chunk_bytes``; each block is validated before it is yielded.

    Only one block is in memory at a time. A non-numeric, empty, NaN or infinite cell raises a DataError with
    the part's file name, the spreadsheet row and the column.
    """
    for path in parts:
        header, columns = embedding_columns(path)
        if dim is not None and len(columns) != dim:
            raise DataError(
                path, f"{len(columns)} embedding columns, expected {dim} like the other parts", row=1
            )
        # Ids as strings, parsed exactly below: through float64 a large conversation id changes.
        column_types = {name: pa.string() for name in EMBEDDING_KEY_COLUMNS}
        column_types.update({c: pa.float32() for c in columns})
        try:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    column_names=header,
                    skip_rows=1,
                    block_size=max(int(chunk_bytes), 1024),
                    use_threads=use_threads,
                ),
                convert_options=pacsv.ConvertOptions(
                    include_columns=[*EMBEDDING_KEY_COLUMNS, *columns],
                    column_types=column_types,
                    strings_can_be_null=False,
                    null_values=[
                        ""
                    ],  # only an empty cell is missing; "nan" must parse as NaN and be reported
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise _locate_bad_embedding_cell(path, header, columns, str(exc)) from None
        row = FIRST_DATA_ROW
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
                raise _locate_bad_embedding_cell(path, header, columns, str(exc)) from None
            n = batch.num_rows
            if n == 0:
                continue
            keys = {
                name: parse_ids(batch.column(name), path, name, first_row=row)
                for name in ("conversation_id", "sentence_number")
            }
            values = batch.select(columns)
            if any(array.null_count for array in values.columns):
                k = next(k for k, array in enumerate(values.columns) if array.null_count)
                index = int(np.argmax(values.column(k).is_null().to_numpy(zero_copy_only=False)))
                raise DataError(path, "empty embedding cell", row=row + index, column=columns[k])
            # One C++ call for the (n, D) matrix: a Python loop over D columns per block cost more than the parse.
            matrix = np.asarray(values.to_tensor(row_major=True))
            finite = np.isfinite(matrix)
            if not finite.all():
                index, k = np.argwhere(~finite)[0]
                raise DataError(
                    path,
                    f"embedding value {matrix[index, k]} is not finite",
                    row=row + int(index),
                    column=columns[k],
                )
            yield EmbeddingChunk(
                path=path,
                first_row=row,
                conversation_id=keys["conversation_id"],
                sentence_number=keys["sentence_number"],
                sentence_speaker=batch.column("sentence_speaker"),
                embedding=matrix,
            )
            row += n
