"""Low-level reading of the released CSV files: the header, string columns, exact integer ids, id lists,
duplicate keys, and locating the first malformed row.

pyarrow reads the files. The standard library's csv module is only the slow path that finds *where* pyarrow
failed, or checks a file whose quote characters do not pair up, so its cost is paid on bad input only. Every
problem becomes one ``DataError`` naming the file, the spreadsheet row (header = row 1) and the column.

Ids are parsed as exact int64, never through float64: above 2**53 a float changes the id, and ``1e300`` cast to
int64 is INT64_MIN, which silently moves a PE across the id-based test split or reorders events.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mmrec_ray.errors import DataError

FIRST_DATA_ROW = 2  # spreadsheet numbering: the header is row 1

# Longest cell accepted. Conversation text is free text, and one sentence (a pasted e-mail, a whole transcript in
# one cell) can legitimately pass the standard library's 128 KB default, so that default is too low. A cell of many
# millions of characters is no sentence, though: it is almost always an unclosed quote that swallowed the rest of
# the file, and reading on would hold the whole file in one Python string. 16 Mi characters is far above any real
# sentence and still cheap to hold; longer cells are rejected with their size.
MAX_FIELD_CHARS = 16 << 20

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# An id is written as whole digits; the released users file writes ids as floats ("123.0"), so zeros after a point
# are accepted too. An exponent ("1e3") is refused even when integral: a float writer only uses one for ids so large
# that their digits were already lost.
_INTEGER = r"^[+-]?[0-9]+(\.0*)?$"
_INTEGER_RE = re.compile(_INTEGER)
_UNDECODABLE = re.compile("[\udc80-\udcff]")  # what surrogateescape turns a non-UTF-8 byte into
_ARROW_BLOCK = 1 << 20  # pyarrow's default block: a row must fit in one


# --------------------------------------------------------------------------------------------------- containers
@dataclass
class IdLists:
    """Variable-length id lists per row in CSR form: ids of row i are ``values[offsets[i]:offsets[i+1]]``."""

    offsets: np.ndarray  # (rows + 1,) int64
    values: np.ndarray  # (total ids,) int64

    @property
    def row_of_value(self) -> np.ndarray:
        """(total ids,) int64: the row each value belongs to."""
        return np.repeat(np.arange(len(self.offsets) - 1, dtype=np.int64), np.diff(self.offsets))

    def to_arrow(self) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), pa.array(self.values, pa.int64()))

    def select_rows(self, rows: np.ndarray) -> IdLists:
        """The lists of ``rows`` (ascending or not), as a new IdLists."""
        lengths = np.diff(self.offsets)[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        starts = self.offsets[rows]
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        return IdLists(offsets, self.values[index])


def row_of(index: int, first_row: int = FIRST_DATA_ROW) -> int:
    return int(index) + first_row


def format_id(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def show_cell(text: str, limit: int = 60) -> str:
    """A cell quoted for a one-line message: line breaks escaped, a long cell cut to its start."""
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text):,} characters)"
    return f"'{text}'"


def format_id_set(ids: np.ndarray, shown: int = 12) -> str:
    """Sorted ids for a one-line message, elided beyond ``shown`` so that a large set stays one short line."""
    ids = np.unique(ids)
    if len(ids) <= shown:
        return ", ".join(format_id(i) for i in ids)
    head = ", ".join(format_id(i) for i in ids[: shown - 1])
    return f"{head}, ..., {format_id(ids[-1])} ({len(ids):,} ids)"


# --------------------------------------------------------------------------------------------------- records
class _RunOn(Exception):
    """A record grew past any accepted cell without ending."""


class _Lines:
    """The file's lines for ``csv.reader``, decoded one by one so that a non-UTF-8 byte is found in its record
    and cell instead of stopping the read; remembers the raw lines of the record being read."""

    def __init__(self, handle, limit: int):
        self.handle = handle
        self.limit = limit  # bytes a record may reach before it is taken for a runaway quote
        self.record: list[str] = []
        self.size = 0
        self.undecodable = False

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = self.handle.readline(self.limit + 1)  # bounded: a file without line breaks is one line
        if not raw:
            raise StopIteration
        self.size += len(raw)
        if self.size > self.limit:
            raise _RunOn
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            line = raw.decode("utf-8", "surrogateescape")
            self.undecodable = True
        self.record.append(line)
        return line

    def take(self) -> list[str]:
        record, self.record, self.size = self.record, [], 0
        return record


def _cell_spans(text: str) -> tuple[list[int], bool]:
    """Where each cell of one record's raw text starts, and whether the text ends inside a quoted cell.

    The csv module's reading (quote opens only at a cell's start, ``""`` is a literal quote, a quote inside an
    unquoted cell is text); only run on the record a problem was found in.
    """
    starts, quoted, skip = [0], False, -1
    for match in re.finditer(r'[",]', text):
        at = match.start()
        if at == skip:
            continue
        if quoted:
            if match.group() == ",":
                continue
            if text.startswith('""', at):
                skip = at + 1
            else:
                quoted = False
        elif match.group() == ",":
            starts.append(at + 1)
        elif at == starts[-1]:
            quoted = True
    return starts, quoted


def _cell_name(index: int, names: Sequence[str] | None) -> str | None:
    return names[index] if names is not None and index < len(names) else None


def _cell_label(index: int, names: Sequence[str] | None) -> str:
    return "the cell" if _cell_name(index, names) else f"cell {index + 1}"


def iter_records(
    path: Path, names: Sequence[str] | None = None, n_fields: int | None = None
) -> Iterator[tuple[int, list[str]]]:
    """Every record of the file, header included, as (spreadsheet row, cells), read with the standard library.

    Raises the DataError of the first record that is not UTF-8, has a cell over ``MAX_FIELD_CHARS``, has other
    than ``n_fields`` cells (when given; blank lines come back as ``[]`` and are not checked), or that the file
    ends inside of (a quote opened and never closed). ``names`` name the columns in the messages.
    """
    run_on = 4 * MAX_FIELD_CHARS  # bytes: the longest accepted cell in UTF-8
    if csv.field_size_limit() <= run_on:
        csv.field_size_limit(run_on + 1)  # the checks below bound a cell, not the csv module's 128 KB default
    with open(path, "rb") as handle:
        lines = _Lines(handle, run_on)
        reader = csv.reader(lines)
        row, last = 0, None
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except _RunOn:
                starts, _ = _cell_spans("".join(lines.record))
                index = len(starts) - 1
                raise DataError(
                    path,
                    f"{_cell_label(index, names)} runs on for more than {run_on:,} bytes "
                    "(a quote that is never closed?)",
                    row=row + 1,
                    column=_cell_name(index, names),
                ) from None
            except csv.Error as exc:
                raise DataError(path, f"not valid CSV ({exc})", row=row + 1) from None
            row += 1
            record = lines.take()
            if lines.undecodable:
                lines.undecodable = False
                for index, cell in enumerate(cells):
                    bad = _UNDECODABLE.search(cell)
                    if bad:
                        byte = ord(bad.group()) - 0xDC00
                        raise DataError(
                            path,
                            f"not UTF-8 text: byte 0x{byte:02X} at character {bad.start() + 1} of "
                            f"{_cell_label(index, names)} (save the file as UTF-8)",
                            row=row,
                            column=_cell_name(index, names),
                        )
            if not cells:
                yield row, cells
                continue
            last = (row, record)
            if max(map(len, cells)) > MAX_FIELD_CHARS:
                longest = max(range(len(cells)), key=lambda k: len(cells[k]))
                raise DataError(
                    path,
                    f"{_cell_label(longest, names)} holds {len(cells[longest]):,} characters, more than the "
                    f"{MAX_FIELD_CHARS:,} accepted (a quote that is never closed?)",
                    row=row,
                    column=_cell_name(longest, names),
                )
            if n_fields is not None and len(cells) != n_fields:
                raise DataError(path, f"expected {n_fields} fields, found {len(cells)}", row=row)
            yield row, cells
    if last is not None:
        starts, quoted = _cell_spans("".join(last[1]))
        if quoted:
            index = len(starts) - 1
            raise DataError(
                path,
                f"the file ends inside a quoted cell: the quote that opens {_cell_label(index, names)} is never "
                "closed (was the file cut short?)",
                row=last[0],
                column=_cell_name(index, names),
            )


def _quotes_unpaired(path: Path) -> bool:
    """Whether the file holds an odd number of quote characters: necessary for it to end inside a quoted cell
    (pyarrow accepts such a file, taking the cut cell as it is), so the exact check runs only then."""
    count = 0
    with open(path, "rb") as handle:
        while block := handle.read(8 << 20):
            count += block.count(b'"')
    return count % 2 == 1


# --------------------------------------------------------------------------------------------------- columns
def read_header(path: Path) -> list[str]:
    records = iter_records(path)
    try:
        first = next(records, None)
    finally:
        records.close()
    if not first or not first[1]:
        raise DataError(path, "empty file: expected a header row", row=1)
    return [name.strip().lstrip("\ufeff") for name in first[1]]


def require_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    for column in required:
        if column not in header:
            raise DataError(path, f"missing column (header has: {', '.join(header)})", row=1, column=column)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(path, "column appears more than once in the header", row=1, column=duplicated[0])


def find_problem(path: Path, header: Sequence[str]) -> DataError | None:
    """The first malformed record of the file (slow; standard library), or None."""
    try:
        for _ in iter_records(path, header, len(header)):
            pass
    except DataError as error:
        return error
    return None


def locate_parse_problem(path: Path, header: Sequence[str], arrow_message: str) -> DataError:
    """The DataError for a file pyarrow could not read: the first malformed record, or pyarrow's own words."""
    words = " ".join(arrow_message.split())  # pyarrow quotes the offending rows, line breaks and all
    if len(words) > 200:
        words = words[:200] + "..."
    return find_problem(path, header) or DataError(path, f"not valid CSV ({words})")


def _read_strings(path: Path, header: list[str], columns: list[str], block_size: int) -> pa.Table:
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=header, skip_rows=1, block_size=block_size),
        convert_options=pacsv.ConvertOptions(
            include_columns=columns,
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=False,
        ),
    )


def read_string_columns(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, pa.Array]:
    """Read the named columns of a small CSV as strings (no type guessing) after checking the header."""
    if not path.is_file():
        raise DataError(path, "file not found")
    header = read_header(path)
    require_columns(path, header, required)
    columns = [*required, *[c for c in optional if c in header]]
    block = _ARROW_BLOCK
    while True:
        try:
            table = _read_strings(path, header, columns, block)
            break
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            # A row longer than the block ("straddles two block boundaries") is legitimate for a long sentence;
            # retry with larger blocks up to what the longest accepted cell needs in UTF-8.
            if "straddl" not in str(exc) or block > 4 * MAX_FIELD_CHARS:
                raise locate_parse_problem(path, header, str(exc)) from None
            block *= 8
    if _quotes_unpaired(path):
        problem = find_problem(path, header)
        if problem is not None:
            raise problem
    result = {}
    for name in columns:
        array = table.column(name).combine_chunks()
        lengths = pc.utf8_length(array)
        if len(array) and pc.max(lengths).as_py() > MAX_FIELD_CHARS:
            index = int(np.argmax(lengths.to_numpy(zero_copy_only=False)))
            raise DataError(
                path,
                f"the cell holds {lengths[index].as_py():,} characters, more than the {MAX_FIELD_CHARS:,} "
                "accepted (a quote that is never closed?)",
                row=row_of(index),
                column=name,
            )
        result[name] = array
    return result


# --------------------------------------------------------------------------------------------------- integers
def integer_problem(text: str) -> str | None:
    """What is wrong with one trimmed cell as an int64 id (for a message), or None."""
    if not _INTEGER_RE.match(text):
        try:
            float(text)
        except ValueError:
            return "is not a number"
        return "is not an integer id (expected whole digits, optionally followed by zeros after a point: 123, 123.0)"
    value = int(text.split(".")[0])
    if not INT64_MIN <= value <= INT64_MAX:
        return f"does not fit in a 64-bit integer id ({INT64_MIN} .. {INT64_MAX})"
    return None


def _to_int64(digits: pa.Array) -> np.ndarray:
    return pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False, writable=True)


def _integers(stripped: pa.Array) -> tuple[np.ndarray | None, int]:
    """(int64 values, -1) of trimmed non-empty cells, or (None, index of the first cell that is no int64 id)."""
    # Plain digits, the common case: pyarrow's integer parsing is exact and refuses signs, points and exponents,
    # but it reads "0x1F" as hexadecimal, which no id column means. (A failing cast is slow: not tried on "123.0".)
    hexadecimal = pc.or_(pc.starts_with(stripped, "0x"), pc.starts_with(stripped, "0X"))
    if not pc.any(pc.or_(hexadecimal, pc.match_substring(stripped, "."))).as_py():
        try:
            return _to_int64(stripped), -1
        except pa.ArrowInvalid:
            pass
    valid = pc.match_substring_regex(stripped, _INTEGER).to_numpy(zero_copy_only=False)
    if not valid.all():
        return None, int(np.argmin(valid))
    digits = pc.list_element(pc.split_pattern(stripped, ".", max_splits=1), 0)  # only zeros follow the point
    digits = pc.utf8_ltrim(digits, "+")
    try:
        return _to_int64(digits), -1
    except pa.ArrowInvalid:
        texts = digits.to_pylist()
        bad = next((i for i, t in enumerate(texts) if not INT64_MIN <= int(t) <= INT64_MAX), None)
        if bad is not None:
            return None, bad
        return np.array([int(t) for t in texts], dtype=np.int64), -1


def parse_optional_ids(
    values: pa.Array, path: Path, column: str, first_row: int = FIRST_DATA_ROW
) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ids with 0 where empty, bool empty mask) of a string column of integer ids."""
    stripped = pc.utf8_trim_whitespace(values)
    empty = pc.equal(stripped, "").to_numpy(zero_copy_only=False)
    filled = np.flatnonzero(~empty)
    numbers = np.zeros(len(empty), dtype=np.int64)
    parsed, bad = _integers(stripped.filter(pa.array(~empty)) if len(filled) < len(empty) else stripped)
    if parsed is None:
        index = int(filled[bad])
        cell = stripped[index].as_py()
        raise DataError(
            path, f"{show_cell(cell)} {integer_problem(cell)}", row=row_of(index, first_row), column=column
        )
    numbers[filled] = parsed
    return numbers, empty


def parse_ids(values: pa.Array, path: Path, column: str, first_row: int = FIRST_DATA_ROW) -> np.ndarray:
    """(R,) int64: a string column of integer ids, none empty."""
    numbers, empty = parse_optional_ids(values, path, column, first_row)
    if empty.any():
        raise DataError(
            path, "empty cell: a number is required", row=row_of(np.argmax(empty), first_row), column=column
        )
    return numbers


def parse_id_lists(values: pa.Array, path: Path, column: str, first_row: int = FIRST_DATA_ROW) -> IdLists:
    """Parse cells such as ``"12,40,7"`` (possibly empty) into CSR id lists; empty pieces are ignored."""
    n = len(values)
    pieces = pc.split_pattern(values, ",")
    parent = pc.list_parent_indices(pieces).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.utf8_trim_whitespace(pc.list_flatten(pieces))
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    parent = parent[keep]
    flat = flat.filter(pa.array(keep))
    numbers, bad = _integers(flat)
    if numbers is None:
        index, piece = int(parent[bad]), flat[bad].as_py()
        raise DataError(
            path,
            f"{show_cell(values[index].as_py())} is not a comma-separated list of integer ids "
            f"({show_cell(piece)} {integer_problem(piece)})",
            row=row_of(index, first_row),
            column=column,
        )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent, minlength=n), out=offsets[1:])
    return IdLists(offsets, numbers)


# --------------------------------------------------------------------------------------------------- keys
def check_unique(
    path: Path, names: Sequence[str], keys: Sequence[np.ndarray], first_row: int = FIRST_DATA_ROW
) -> None:
    """Raise on the first row (in file order) whose key tuple was already seen."""
    if len(keys[0]) < 2:
        return
    order = np.lexsort(tuple(reversed([np.asarray(k) for k in keys])))
    same = np.ones(len(order) - 1, dtype=bool)
    for key in keys:
        sorted_key = np.asarray(key)[order]
        same &= sorted_key[1:] == sorted_key[:-1]
    if not same.any():
        return
    index = int(order[1:][same].min())
    key_text = ", ".join(f"{n}={format_id(np.asarray(k)[index])}" for n, k in zip(names, keys))
    matches = np.ones(len(keys[0]), dtype=bool)
    for key in keys:
        matches &= np.asarray(key) == np.asarray(key)[index]
    first = int(np.argmax(matches))
    raise DataError(
        path,
        f"duplicate key ({key_text}); first seen on row {row_of(first, first_row)}",
        row=row_of(index, first_row),
        column=names[-1],
    )
