"""The embedding CSV parts of the released format (``data_conversations_embedding/*.csv``), one part at a time.

A part has ``conversation_id, sentence_number, sentence_speaker, embedding_1 .. embedding_D``; the release's are
about 1.96 GB each (107 of them). ``iter_embedding_chunks`` streams a part block by block — with the compiled
reader (``embedding_kernel``) while rows have the release's plain shape, with ``pyarrow.csv.open_csv`` from the
first row that does not — and validates each block as it goes (exact integer ids, finite numbers), so memory holds
one block, never a part. Running many parts at once is ``ingest``'s job.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
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
KERNEL_BLOCK_FACTOR = 4  # the compiled reader's blocks are this many chunks (see _kernel_chunks)
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
    # (conversation ids (k,), float64 sums (k, D), sentence counts (k,)) of the block's rows when the reader
    # already added them up, else None (then the caller sums ``embedding``)
    conversation_sums: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


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
    reader: str = "auto",
) -> Iterator[EmbeddingChunk]:
    """Stream every part in blocks of about ``chunk_bytes``; each block is validated before it is yielded.

    Only one block is in memory at a time. A non-numeric, empty, NaN or infinite cell raises a DataError with
    the part's file name, the spreadsheet row and the column.

    ``reader``: ``auto`` reads a part whose header is the canonical column order with the compiled kernel
    (``embedding_kernel``, ~3x faster per core) and hands over to pyarrow's reader at the first row outside the
    kernel's subset; ``arrow`` always uses pyarrow's reader. Both give the same chunks and the same errors.
    """
    if reader not in ("auto", "arrow"):
        raise ValueError(f"reader must be 'auto' or 'arrow', not {reader!r}")
    for path in parts:
        header, columns = embedding_columns(path)
        if dim is not None and len(columns) != dim:
            raise DataError(
                path, f"{len(columns)} embedding columns, expected {dim} like the other parts", row=1
            )
        if reader == "auto" and header == [*EMBEDDING_KEY_COLUMNS, *columns] and _kernel_available():
            yield from _kernel_chunks(path, header, columns, chunk_bytes, use_threads)
        else:
            yield from _arrow_chunks(path, header, columns, chunk_bytes, use_threads)


@functools.cache
def _kernel_available() -> bool:
    """numba is a dependency, but a platform without its wheels still reads parts, with pyarrow's reader."""
    try:
        from mmrec_ray.data import embedding_kernel  # noqa: F401
    except ImportError as error:
        warnings.warn(f"embedding CSVs are read without the compiled reader ({error})", stacklevel=3)
        return False
    return True


def _kernel_chunks(
    path: Path, header: list[str], columns: list[str], chunk_bytes: int, use_threads: bool
) -> Iterator[EmbeddingChunk]:
    """The compiled kernel over blocks cut at line ends; the rest of the part goes to pyarrow's reader from the
    first block the kernel stops in (an unusual or bad row), so results and messages are the general reader's."""
    from mmrec_ray.data import embedding_kernel as kernel

    dim = len(columns)
    # pyarrow holds ~40x its block while parsing wide rows, the kernel ~3x (text, rows, float32 values): four times
    # the block stays well inside the same memory and spends 4x less per-block overhead (+5-9 % per core).
    block_bytes = KERNEL_BLOCK_FACTOR * max(int(chunk_bytes), 1024)
    # A row is at least two bytes a value: an upper bound on the rows of a block, without counting lines.
    bytes_per_row = 2 * dim
    buffer = bytearray(2 * block_bytes + kernel.PADDING)  # one buffer for the part: no copy per block
    with open(path, "rb") as source:
        source.readline()  # the header, already checked
        offset = source.tell()  # of the block's first row in the file
        row = FIRST_DATA_ROW
        filled = 0  # bytes in the buffer: the unparsed tail of the last block, then the new read
        at_end = False
        while not at_end:
            if filled + block_bytes + kernel.PADDING > len(buffer):  # a row longer than the block
                buffer.extend(bytes(filled + block_bytes + kernel.PADDING - len(buffer)))
            with memoryview(buffer) as view:
                read = source.readinto(view[filled : filled + block_bytes])
            filled += read
            at_end = read == 0
            if at_end:
                if filled == 0:
                    return
                if buffer[filled - 1] != 10:  # the last line may lack its newline
                    buffer[filled] = 10
                    filled += 1
                end = filled
            else:
                end = buffer.rfind(b"\n", 0, filled) + 1
                if end == 0:
                    continue
            buffer[filled : filled + kernel.PADDING] = bytes(kernel.PADDING)
            data = np.frombuffer(buffer, dtype=np.uint8)
            capacity = end // bytes_per_row + 1
            ids = np.empty((capacity, 2), dtype=np.int64)
            spans = np.empty((capacity, 2), dtype=np.int64)
            matrix = np.empty((capacity, dim), dtype=np.float32)
            inexact = np.empty((64 + capacity, 4), dtype=np.int64)
            run_owner = np.empty(capacity, dtype=np.int64)
            run_sums = np.empty((capacity, dim), dtype=np.float64)
            run_rows = np.empty(capacity, dtype=np.int64)
            run_count = np.zeros(1, dtype=np.int64)
            status, rows, inexact_count = kernel.parse_block(
                data,
                end,
                dim,
                ids,
                spans,
                matrix,
                inexact,
                kernel.SCALES,
                run_owner,
                run_sums,
                run_rows,
                run_count,
            )
            if status != kernel.OK:
                del data
                yield from _arrow_chunks(
                    path, header, columns, chunk_bytes, use_threads, start_offset=offset, first_row=row
                )
                return
            for r, k, start, stop in inexact[:inexact_count]:
                matrix[r, k] = kernel.exact_float32(bytes(buffer[start:stop]))
            runs = int(run_count[0])
            sums = None
            # The kernel's sums are the caller's own when each conversation is one run and no value was re-rounded.
            if inexact_count == 0 and np.all(run_owner[1:runs] > run_owner[: runs - 1]):
                sums = (run_owner[:runs].copy(), run_sums[:runs].copy(), run_rows[:runs].copy())
            chunk = EmbeddingChunk(
                path=path,
                first_row=row,
                conversation_id=ids[:rows, 0].copy(),
                sentence_number=ids[:rows, 1].copy(),
                sentence_speaker=_speaker_array(data, spans[:rows]),
                embedding=matrix[:rows].copy(),  # not a view of a block-bound allocation
                conversation_sums=sums,
            )
            del data  # the buffer is resized only with no view on it
            yield chunk
            row += rows
            offset += end
            buffer[: filled - end] = buffer[end:filled]
            filled -= end


def _speaker_array(source: np.ndarray, spans: np.ndarray) -> pa.Array:
    """The speaker cells (byte spans of ``source``, ASCII) as one Arrow string array."""
    lengths = spans[:, 1] - spans[:, 0]
    offsets = np.zeros(len(spans) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    gather = np.repeat(spans[:, 0] - offsets[:-1], lengths) + np.arange(offsets[-1])
    return pa.StringArray.from_buffers(
        len(spans), pa.py_buffer(offsets), pa.py_buffer(source[gather].tobytes())
    )


def _arrow_chunks(
    path: Path,
    header: list[str],
    columns: list[str],
    chunk_bytes: int,
    use_threads: bool,
    *,
    start_offset: int | None = None,
    first_row: int = FIRST_DATA_ROW,
) -> Iterator[EmbeddingChunk]:
    """pyarrow's streaming reader over the part, or over its rows from byte ``start_offset`` (a row start)."""
    # Ids as strings, parsed exactly below: through float64 a large conversation id changes.
    column_types = {name: pa.string() for name in EMBEDDING_KEY_COLUMNS}
    column_types.update({c: pa.float32() for c in columns})
    source = path
    if start_offset is not None:
        source = open(path, "rb")  # noqa: SIM115 - closed below, after the reader is done with it
        source.seek(start_offset)
    try:
        try:
            reader = pacsv.open_csv(
                source,
                read_options=pacsv.ReadOptions(
                    column_names=header,
                    skip_rows=1 if start_offset is None else 0,
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
        row = first_row
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
    finally:
        if start_offset is not None:
            source.close()
