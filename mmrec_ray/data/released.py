"""Reading and validating the released dataset format (SPEC 2.1) and the raw-text extension (SPEC 2.2).

The files are read unchanged: ``conversation_id`` / ``session_id`` in ``data_users.csv`` are floats with empty
cells, ``action_tags`` / ``keywords`` are comma-separated id strings that may be empty. Every cell is first read
as a string and then parsed here, so that a bad cell becomes a ``DataError`` naming the file, the spreadsheet row
(header = row 1) and the column -- never a pandas/pyarrow traceback.

Multi-valued cells (tags, keywords) are held in CSR form: ``IdLists(offsets, values)`` where the ids of row i are
``values[offsets[i]:offsets[i + 1]]``.

The embedding CSV parts (well over 13 GB in the release) are never loaded whole: ``iter_embedding_chunks``
streams them block by block with ``pyarrow.csv.open_csv`` and validates each block as it goes.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from mmrec_ray.errors import DataError

USERS_FILE = "data_users.csv"
PURCHASES_FILE = "data_purchase_events.csv"
POST_FILTER_FILE = "data_post_filter.csv"
SESSIONS_FILE = "data_sessions.csv"
KEYWORDS_FILE = "data_conversations_keyword.csv"
EMBEDDING_DIR = "data_conversations_embedding"
TEXT_FILE = "data_conversations_text.csv"
KEYWORD_MAPPING_FILE = "keyword_mapping.csv"

USERS_COLUMNS = ("user_id", "purchase_event_id", "event_number", "conversation_id", "session_id")
PURCHASES_COLUMNS = ("purchase_event_id", "item_id")
SESSIONS_COLUMNS = ("session_id", "action_number", "action_tags")
KEYWORDS_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker", "keywords")
TEXT_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker", "text")
EMBEDDING_KEY_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker")
KEYWORD_MAPPING_COLUMNS = ("word", "keyword_id")

FIRST_DATA_ROW = 2  # spreadsheet numbering: the header is row 1
DEFAULT_CHUNK_BYTES = (
    4 << 20
)  # embedding CSV block: ~4 MB of text per chunk; pyarrow holds ~40x this while parsing wide rows
_EMBEDDING_COLUMN = re.compile(r"^embedding_(\d+)$")
_PART_NUMBER = re.compile(r"(\d+)\.csv$")


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


@dataclass
class Users:
    path: Path
    user_id: np.ndarray  # (R,) int64
    purchase_event_id: np.ndarray  # (R,) int64
    event_number: np.ndarray  # (R,) int64
    conversation_id: np.ndarray  # (R,) float64, NaN where empty
    session_id: np.ndarray  # (R,) float64, NaN where empty

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user_id": self.user_id,
                "purchase_event_id": self.purchase_event_id,
                "event_number": self.event_number,
                "conversation_id": pd.array(_nullable_int(self.conversation_id), dtype="Int64"),
                "session_id": pd.array(_nullable_int(self.session_id), dtype="Int64"),
            }
        )


@dataclass
class PairTable:
    """``data_purchase_events.csv`` or ``data_post_filter.csv``: one (PE, item) per row."""

    path: Path
    purchase_event_id: np.ndarray  # (R,) int64
    item_id: np.ndarray  # (R,) int64

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame({"purchase_event_id": self.purchase_event_id, "item_id": self.item_id})


@dataclass
class Sessions:
    path: Path
    session_id: np.ndarray  # (A,) int64, one row per action
    action_number: np.ndarray  # (A,) int64
    action_tags: IdLists

    def table(self) -> pa.Table:
        return pa.table(
            {
                "session_id": self.session_id,
                "action_number": self.action_number,
                "action_tags": self.action_tags.to_arrow(),
            }
        )


@dataclass
class Sentences:
    """Sentence-level conversation data (keywords file, or text file)."""

    path: Path
    conversation_id: np.ndarray  # (M,) int64
    sentence_number: np.ndarray  # (M,) int64
    sentence_speaker: np.ndarray  # (M,) object str
    keywords: IdLists | None = None
    text: np.ndarray | None = None  # (M,) object str

    def table(self) -> pa.Table:
        columns = {
            "conversation_id": self.conversation_id,
            "sentence_number": self.sentence_number,
            "sentence_speaker": pa.array(self.sentence_speaker, pa.string()),
        }
        if self.keywords is not None:
            columns["keywords"] = self.keywords.to_arrow()
        if self.text is not None:
            columns["text"] = pa.array(self.text, pa.string())
        return pa.table(columns)


@dataclass
class ReleasedDataset:
    """Every small file of a dataset folder, parsed and cross-checked; embedding parts only located."""

    root: Path
    users: Users
    purchases: PairTable
    post_filter: PairTable
    sessions: Sessions
    keywords: Sentences | None  # None only when text + keyword mapping stand in for it
    text: Sentences | None
    keyword_mapping: dict[str, int] | None
    embedding_parts: list[Path]
    embedding_dim: int | None  # from the parts' headers; None when there are no parts
    notes: dict = field(default_factory=dict)  # counts of tolerated oddities (reported, not fatal)

    @property
    def keywords_source(self) -> str:
        return "file" if self.keywords is not None and self.keywords.path.name == KEYWORDS_FILE else "text"


# --------------------------------------------------------------------------------------------------- parsing
def _nullable_int(values: np.ndarray) -> list:
    return [None if math.isnan(v) else int(v) for v in values]


def _row(index: int, first_row: int = FIRST_DATA_ROW) -> int:
    return int(index) + first_row


def read_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not UTF-8 text ({exc.reason})") from None
    if not header:
        raise DataError(path, "empty file: expected a header row", row=1)
    return [name.strip().lstrip("\ufeff") for name in header]


def _require_columns(path: Path, header: Sequence[str], required: Sequence[str]) -> None:
    for column in required:
        if column not in header:
            raise DataError(path, f"missing column (header has: {', '.join(header)})", row=1, column=column)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DataError(path, "column appears more than once in the header", row=1, column=duplicated[0])


def _locate_parse_problem(path: Path, n_columns: int) -> DataError:
    """Find the first malformed CSV row with the standard library (slow; used only after pyarrow failed)."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for record in reader:
            if not record:
                continue
            if len(record) != n_columns:
                return DataError(
                    path, f"expected {n_columns} fields, found {len(record)}", row=reader.line_num
                )
    return DataError(path, "the file is not valid CSV")


def read_string_columns(
    path: Path, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, pa.Array]:
    """Read the named columns of a small CSV as strings (no type guessing) after checking the header."""
    if not path.is_file():
        raise DataError(path, "file not found")
    header = read_header(path)
    _require_columns(path, header, required)
    columns = [*required, *[c for c in optional if c in header]]
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=header, skip_rows=1),
            convert_options=pacsv.ConvertOptions(
                include_columns=columns,
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        raise _locate_parse_problem(path, len(header)) from None
    return {c: table.column(c).combine_chunks() for c in columns}


def parse_numbers(
    values: pa.Array,
    path: Path,
    column: str,
    *,
    allow_empty: bool = False,
    integral: bool = True,
    first_row: int = FIRST_DATA_ROW,
) -> np.ndarray:
    """Parse a string column as numbers. Integral ids come back int64 (float64 with NaN when ``allow_empty``)."""
    stripped = pc.utf8_trim_whitespace(values)
    empty = pc.equal(stripped, "").to_numpy(zero_copy_only=False)
    if empty.any() and not allow_empty:
        raise DataError(
            path, "empty cell: a number is required", row=_row(np.argmax(empty), first_row), column=column
        )
    as_null = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, pa.string()), stripped)
    try:
        numbers = pc.cast(as_null, pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        coerced = pd.to_numeric(pd.Series(as_null.to_pandas(), dtype=object), errors="coerce").to_numpy(float)
        bad = np.isnan(coerced) & ~empty
        index = int(np.argmax(bad))
        raise DataError(
            path, f"'{values[index].as_py()}' is not a number", row=_row(index, first_row), column=column
        ) from None
    numbers = np.where(empty, np.nan, numbers)
    bad = ~np.isfinite(numbers) & ~empty
    if bad.any():
        index = int(np.argmax(bad))
        raise DataError(
            path,
            f"'{values[index].as_py()}' is not a finite number",
            row=_row(index, first_row),
            column=column,
        )
    if integral:
        bad = (numbers != np.round(numbers)) & ~empty
        if bad.any():
            index = int(np.argmax(bad))
            raise DataError(
                path,
                f"'{values[index].as_py()}' is not an integer id",
                row=_row(index, first_row),
                column=column,
            )
        if not allow_empty:
            return numbers.astype(np.int64)
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
    try:
        numbers = pc.cast(flat, pa.float64()).to_numpy(zero_copy_only=False)
        bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        numbers = pd.to_numeric(pd.Series(flat.to_pandas(), dtype=object), errors="coerce").to_numpy(float)
        bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        index = int(parent[np.argmax(bad)])
        raise DataError(
            path,
            f"'{values[index].as_py()}' is not a comma-separated list of integer ids",
            row=_row(index, first_row),
            column=column,
        )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(parent, minlength=n), out=offsets[1:])
    return IdLists(offsets, numbers.astype(np.int64))


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
    later = order[1:][same]
    earlier = order[:-1][same]
    pick = int(np.argmin(later))
    index, first = int(later[pick]), int(earlier[pick])
    # With a stable lexsort, `earlier` may itself be a repeat; find the very first occurrence.
    key_text = ", ".join(f"{n}={_fmt(np.asarray(k)[index])}" for n, k in zip(names, keys))
    matches = np.ones(len(keys[0]), dtype=bool)
    for key in keys:
        matches &= np.asarray(key) == np.asarray(key)[index]
    first = int(np.argmax(matches))
    raise DataError(
        path,
        f"duplicate key ({key_text}); first seen on row {_row(first, first_row)}",
        row=_row(index, first_row),
        column=names[-1],
    )


def _fmt(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------------------------------- files
def read_users(path: Path) -> Users:
    cols = read_string_columns(path, USERS_COLUMNS)
    users = Users(
        path=path,
        user_id=parse_numbers(cols["user_id"], path, "user_id"),
        purchase_event_id=parse_numbers(cols["purchase_event_id"], path, "purchase_event_id"),
        event_number=parse_numbers(cols["event_number"], path, "event_number"),
        conversation_id=parse_numbers(cols["conversation_id"], path, "conversation_id", allow_empty=True),
        session_id=parse_numbers(cols["session_id"], path, "session_id", allow_empty=True),
    )
    if len(users.user_id) == 0:
        raise DataError(path, "no data rows")
    has_c, has_s = ~np.isnan(users.conversation_id), ~np.isnan(users.session_id)
    both, neither = has_c & has_s, ~has_c & ~has_s
    if both.any():
        raise DataError(
            path,
            "both conversation_id and session_id are set; exactly one must be",
            row=_row(np.argmax(both)),
            column="conversation_id",
        )
    if neither.any():
        raise DataError(
            path,
            "neither conversation_id nor session_id is set; exactly one must be",
            row=_row(np.argmax(neither)),
            column="conversation_id",
        )
    check_unique(path, ("purchase_event_id", "event_number"), (users.purchase_event_id, users.event_number))
    # A purchase event belongs to one user.
    order = np.lexsort((np.arange(len(users.user_id)), users.purchase_event_id))
    pe_sorted, user_sorted = users.purchase_event_id[order], users.user_id[order]
    clash = (pe_sorted[1:] == pe_sorted[:-1]) & (user_sorted[1:] != user_sorted[:-1])
    if clash.any():
        index = int(order[1:][clash].min())
        raise DataError(
            path,
            f"purchase event {users.purchase_event_id[index]} belongs to more than one user_id",
            row=_row(index),
            column="user_id",
        )
    return users


def read_pairs(path: Path) -> PairTable:
    cols = read_string_columns(path, PURCHASES_COLUMNS)
    table = PairTable(
        path=path,
        purchase_event_id=parse_numbers(cols["purchase_event_id"], path, "purchase_event_id"),
        item_id=parse_numbers(cols["item_id"], path, "item_id"),
    )
    check_unique(path, PURCHASES_COLUMNS, (table.purchase_event_id, table.item_id))
    return table


def read_sessions(path: Path) -> Sessions:
    cols = read_string_columns(path, SESSIONS_COLUMNS)
    sessions = Sessions(
        path=path,
        session_id=parse_numbers(cols["session_id"], path, "session_id"),
        action_number=parse_numbers(cols["action_number"], path, "action_number"),
        action_tags=parse_id_lists(cols["action_tags"], path, "action_tags"),
    )
    check_unique(path, ("session_id", "action_number"), (sessions.session_id, sessions.action_number))
    return sessions


def read_sentences(path: Path, kind: str) -> Sentences:
    """kind: "keywords" (data_conversations_keyword.csv) or "text" (data_conversations_text.csv)."""
    columns = KEYWORDS_COLUMNS if kind == "keywords" else TEXT_COLUMNS
    cols = read_string_columns(path, columns)
    sentences = Sentences(
        path=path,
        conversation_id=parse_numbers(cols["conversation_id"], path, "conversation_id"),
        sentence_number=parse_numbers(cols["sentence_number"], path, "sentence_number"),
        sentence_speaker=np.asarray(cols["sentence_speaker"].to_pylist(), dtype=object),
    )
    if kind == "keywords":
        sentences.keywords = parse_id_lists(cols["keywords"], path, "keywords")
    else:
        empty = pc.equal(pc.utf8_trim_whitespace(cols["text"]), "").to_numpy(zero_copy_only=False)
        if empty.any():
            raise DataError(path, "empty sentence text", row=_row(np.argmax(empty)), column="text")
        sentences.text = np.asarray(cols["text"].to_pylist(), dtype=object)
    check_unique(
        path, ("conversation_id", "sentence_number"), (sentences.conversation_id, sentences.sentence_number)
    )
    return sentences


def read_keyword_mapping(path: Path) -> dict[str, int]:
    cols = read_string_columns(path, KEYWORD_MAPPING_COLUMNS)
    ids = parse_numbers(cols["keyword_id"], path, "keyword_id")
    words = [w.strip() for w in cols["word"].to_pylist()]
    mapping: dict[str, int] = {}
    for index, word in enumerate(words):
        if not word:
            raise DataError(path, "empty word", row=_row(index), column="word")
        if word in mapping:
            raise DataError(path, f"word '{word}' is mapped twice", row=_row(index), column="word")
        mapping[word] = int(ids[index])
    return mapping


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
    _require_columns(path, header, EMBEDDING_KEY_COLUMNS)
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


def _locate_bad_embedding_cell(path: Path, header: list[str], columns: Sequence[str]) -> DataError:
    """Find the first non-numeric / empty / non-finite cell with the standard library (error path only)."""
    wanted = [(header.index(c), c) for c in ("conversation_id", "sentence_number", *columns)]
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                return DataError(
                    path, f"expected {len(header)} fields, found {len(record)}", row=reader.line_num
                )
            for position, name in wanted:
                cell = record[position].strip()
                try:
                    value = float(cell)
                except ValueError:
                    return DataError(path, f"'{cell}' is not a number", row=reader.line_num, column=name)
                if not math.isfinite(value):
                    return DataError(
                        path, f"'{cell}' is not a finite number", row=reader.line_num, column=name
                    )
    return DataError(path, "the file is not valid CSV")


def iter_embedding_chunks(
    parts: Sequence[Path], chunk_bytes: int = DEFAULT_CHUNK_BYTES, dim: int | None = None
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
        column_types = {
            "conversation_id": pa.float64(),
            "sentence_number": pa.float64(),
            "sentence_speaker": pa.string(),
        }
        column_types.update({c: pa.float32() for c in columns})
        try:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(
                    column_names=header, skip_rows=1, block_size=max(int(chunk_bytes), 1024)
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
        except (pa.ArrowInvalid, UnicodeDecodeError):
            raise _locate_bad_embedding_cell(path, header, columns) from None
        row = FIRST_DATA_ROW
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except (pa.ArrowInvalid, UnicodeDecodeError):
                raise _locate_bad_embedding_cell(path, header, columns) from None
            n = batch.num_rows
            if n == 0:
                continue
            keys = {}
            for name in ("conversation_id", "sentence_number"):
                array = batch.column(name)
                if array.null_count:
                    index = int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))
                    raise DataError(path, "empty cell: a number is required", row=row + index, column=name)
                values = array.to_numpy(zero_copy_only=False)
                bad = ~np.isfinite(values) | (values != np.round(values))
                if bad.any():
                    index = int(np.argmax(bad))
                    raise DataError(
                        path, f"'{values[index]}' is not an integer id", row=row + index, column=name
                    )
                keys[name] = values.astype(np.int64)
            matrix = np.empty((n, len(columns)), dtype=np.float32)
            for k, name in enumerate(columns):
                array = batch.column(name)
                if array.null_count:
                    index = int(np.argmax(array.is_null().to_numpy(zero_copy_only=False)))
                    raise DataError(path, "empty embedding cell", row=row + index, column=name)
                matrix[:, k] = array.to_numpy(zero_copy_only=False)
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


# --------------------------------------------------------------------------------------------------- dataset
def _first_row_where(mask: np.ndarray) -> int:
    return _row(int(np.argmax(mask)))


def load_released(root: str | Path, *, need_embeddings_or_text: bool = True) -> ReleasedDataset:
    """Read and cross-check every small file of a dataset folder (embedding parts are located, not read).

    Cross-checks: every PE in users has purchases (a PE without items is an error), purchases and post-filter
    name only known PEs, post-filter items are in the item set (the items purchased anywhere), every referenced
    session / conversation exists in the session / keyword file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder not found")
    users = read_users(root / USERS_FILE)
    purchases = read_pairs(root / PURCHASES_FILE)
    post_filter = read_pairs(root / POST_FILTER_FILE)
    sessions = read_sessions(root / SESSIONS_FILE)

    text = read_sentences(root / TEXT_FILE, "text") if (root / TEXT_FILE).is_file() else None
    mapping = (
        read_keyword_mapping(root / KEYWORD_MAPPING_FILE) if (root / KEYWORD_MAPPING_FILE).is_file() else None
    )
    if (root / KEYWORDS_FILE).is_file():
        keywords = read_sentences(root / KEYWORDS_FILE, "keywords")
    elif text is not None and mapping is not None:
        keywords = keywords_from_text(text, mapping)
    else:
        raise DataError(
            root / KEYWORDS_FILE,
            f"file not found (it can be derived only when both {TEXT_FILE} and {KEYWORD_MAPPING_FILE} are present)",
        )

    parts = find_embedding_parts(root)
    dim = embedding_dim_of_parts(parts) if parts else None
    if need_embeddings_or_text and not parts and text is None:
        raise DataError(
            root / EMBEDDING_DIR,
            f"no embedding parts ({EMBEDDING_DIR}/*.csv) and no {TEXT_FILE} to compute them from",
        )

    pe_ids = np.unique(users.purchase_event_id)
    # Purchases and post-filter must name known PEs.
    for table in (purchases, post_filter):
        unknown = ~np.isin(table.purchase_event_id, pe_ids)
        if unknown.any():
            index = int(np.argmax(unknown))
            raise DataError(
                table.path,
                f"purchase event {table.purchase_event_id[index]} does not appear in {USERS_FILE}",
                row=_row(index),
                column="purchase_event_id",
            )
    without_items = ~np.isin(users.purchase_event_id, purchases.purchase_event_id)
    if without_items.any():
        index = int(np.argmax(without_items))
        raise DataError(
            purchases.path,
            f"purchase event {users.purchase_event_id[index]} ({USERS_FILE} row {_row(index)}) has no purchased items",
            column="purchase_event_id",
        )
    item_set = np.unique(purchases.item_id)
    outside = ~np.isin(post_filter.item_id, item_set)
    if outside.any():
        index = int(np.argmax(outside))
        raise DataError(
            post_filter.path,
            f"item {post_filter.item_id[index]} is outside the item set (items purchased in {PURCHASES_FILE}: "
            f"{', '.join(str(i) for i in item_set)})",
            row=_row(index),
            column="item_id",
        )

    # Dangling references from users.
    has_session = ~np.isnan(users.session_id)
    dangling = has_session & ~np.isin(users.session_id, sessions.session_id)
    if dangling.any():
        index = int(np.argmax(dangling))
        raise DataError(
            users.path,
            f"session {_fmt(users.session_id[index])} does not appear in {SESSIONS_FILE}",
            row=_row(index),
            column="session_id",
        )
    has_conversation = ~np.isnan(users.conversation_id)
    dangling = has_conversation & ~np.isin(users.conversation_id, keywords.conversation_id)
    if dangling.any():
        index = int(np.argmax(dangling))
        raise DataError(
            users.path,
            f"conversation {_fmt(users.conversation_id[index])} does not appear in {keywords.path.name}",
            row=_row(index),
            column="conversation_id",
        )
    if text is not None:
        dangling = has_conversation & ~np.isin(users.conversation_id, text.conversation_id)
        if dangling.any() and not parts:
            index = int(np.argmax(dangling))
            raise DataError(
                users.path,
                f"conversation {_fmt(users.conversation_id[index])} has no sentences in {TEXT_FILE} to embed",
                row=_row(index),
                column="conversation_id",
            )

    notes = {}
    # Tolerated, reported: a PE without post-filter rows can never be recommended anything; a purchased item
    # missing from the PE's post-filter can never be hit.
    notes["pes_without_post_filter"] = int((~np.isin(pe_ids, post_filter.purchase_event_id)).sum())
    purchase_keys = purchases.purchase_event_id * (int(item_set.max()) + 1) + purchases.item_id
    filter_keys = post_filter.purchase_event_id * (int(item_set.max()) + 1) + post_filter.item_id
    notes["purchases_not_in_post_filter"] = int((~np.isin(purchase_keys, filter_keys)).sum())

    return ReleasedDataset(
        root=root,
        users=users,
        purchases=purchases,
        post_filter=post_filter,
        sessions=sessions,
        keywords=keywords,
        text=text,
        keyword_mapping=mapping,
        embedding_parts=parts,
        embedding_dim=dim,
        notes=notes,
    )


def keywords_from_text(text: Sentences, mapping: dict[str, int]) -> Sentences:
    """Derive the keyword file's content from the sentence text with the documented word -> id mapping."""
    from mmrec_ray.embed.keywords import extract_keywords

    lists = extract_keywords([str(t) for t in text.text], mapping)
    if len(lists) != len(text.text):
        raise DataError(
            text.path, f"keyword extraction returned {len(lists)} lists for {len(text.text)} sentences"
        )
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = np.fromiter((int(v) for row in lists for v in row), dtype=np.int64, count=int(offsets[-1]))
    return Sentences(
        path=text.path,
        conversation_id=text.conversation_id,
        sentence_number=text.sentence_number,
        sentence_speaker=text.sentence_speaker,
        keywords=IdLists(offsets, values),
    )
