"""Reading and validating the released dataset format (SPEC 2.1) and the raw-text extension (SPEC 2.2).

The files are read unchanged: ``conversation_id`` / ``session_id`` in ``data_users.csv`` are floats with empty
cells, ``action_tags`` / ``keywords`` are comma-separated id strings that may be empty. Every cell is first read
as a string and then parsed here, so that a bad cell becomes a ``DataError`` naming the file, the spreadsheet row
(header = row 1) and the column -- never a pandas/pyarrow traceback. How a cell is read (exact int64 ids, id
lists, locating a malformed row) lives in ``csvparse``; this module knows the files, their columns and how they
must agree with each other.

Multi-valued cells (tags, keywords) are held in CSR form: ``IdLists(offsets, values)`` where the ids of row i are
``values[offsets[i]:offsets[i + 1]]``.

The embedding CSV parts (about 210 GB in the release) are located here and read by ``embedding_csv`` (one part,
block by block) and ``ingest`` (every part, in parallel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mmrec_ray.data.csvparse import (
    IdLists,
    check_unique,
    format_id,
    format_id_set,
    parse_id_lists,
    parse_ids,
    parse_optional_ids,
    read_string_columns,
    row_of,
    show_cell,
)
from mmrec_ray.data.embedding_csv import (  # noqa: F401  (EMBEDDING_DIR: the folder's layout, named here too)
    DEFAULT_CHUNK_BYTES,
    EMBEDDING_DIR,
    embedding_dim_of_parts,
    find_embedding_parts,
)
from mmrec_ray.errors import DataError

USERS_FILE = "data_users.csv"
PURCHASES_FILE = "data_purchase_events.csv"
POST_FILTER_FILE = "data_post_filter.csv"
SESSIONS_FILE = "data_sessions.csv"
KEYWORDS_FILE = "data_conversations_keyword.csv"
TEXT_FILE = "data_conversations_text.csv"
KEYWORD_MAPPING_FILE = "keyword_mapping.csv"

USERS_COLUMNS = ("user_id", "purchase_event_id", "event_number", "conversation_id", "session_id")
PURCHASES_COLUMNS = ("purchase_event_id", "item_id")
SESSIONS_COLUMNS = ("session_id", "action_number", "action_tags")
KEYWORDS_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker", "keywords")
TEXT_COLUMNS = ("conversation_id", "sentence_number", "sentence_speaker", "text")
KEYWORD_MAPPING_COLUMNS = ("word", "keyword_id")

# Every integer up to 2**53 in magnitude is exactly a float64; the optional user ids are held as floats (NaN =
# empty), so larger ones are refused rather than rounded to a neighbour.
FLOAT_EXACT = 2**53


# --------------------------------------------------------------------------------------------------- containers
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


# --------------------------------------------------------------------------------------------------- files
def _nullable_int(values: np.ndarray) -> list:
    return [None if math.isnan(v) else int(v) for v in values]


def _parse_float_ids(values: pa.Array, path: Path, column: str) -> np.ndarray:
    """(R,) float64 with NaN where empty: the optional ids of data_users.csv, held as floats like the file writes
    them so that NaN can mark the empty cells (see FLOAT_EXACT)."""
    ids, empty = parse_optional_ids(values, path, column)
    beyond = ~empty & ((ids > FLOAT_EXACT) | (ids < -FLOAT_EXACT))
    if beyond.any():
        index = int(np.argmax(beyond))
        raise DataError(
            path,
            f"id {ids[index]} is beyond 2**53 = {FLOAT_EXACT}, the largest this optional id column holds exactly",
            row=row_of(index),
            column=column,
        )
    return np.where(empty, np.nan, ids.astype(np.float64))


def read_users(path: Path) -> Users:
    cols = read_string_columns(path, USERS_COLUMNS)
    users = Users(
        path=path,
        user_id=parse_ids(cols["user_id"], path, "user_id"),
        purchase_event_id=parse_ids(cols["purchase_event_id"], path, "purchase_event_id"),
        event_number=parse_ids(cols["event_number"], path, "event_number"),
        conversation_id=_parse_float_ids(cols["conversation_id"], path, "conversation_id"),
        session_id=_parse_float_ids(cols["session_id"], path, "session_id"),
    )
    if len(users.user_id) == 0:
        raise DataError(path, "no data rows")
    has_c, has_s = ~np.isnan(users.conversation_id), ~np.isnan(users.session_id)
    both, neither = has_c & has_s, ~has_c & ~has_s
    if both.any():
        raise DataError(
            path,
            "both conversation_id and session_id are set; exactly one must be",
            row=row_of(np.argmax(both)),
            column="conversation_id",
        )
    if neither.any():
        raise DataError(
            path,
            "neither conversation_id nor session_id is set; exactly one must be",
            row=row_of(np.argmax(neither)),
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
            row=row_of(index),
            column="user_id",
        )
    return users


def read_pairs(path: Path) -> PairTable:
    cols = read_string_columns(path, PURCHASES_COLUMNS)
    table = PairTable(
        path=path,
        purchase_event_id=parse_ids(cols["purchase_event_id"], path, "purchase_event_id"),
        item_id=parse_ids(cols["item_id"], path, "item_id"),
    )
    negative = table.item_id < 0
    if negative.any():
        index = int(np.argmax(negative))
        raise DataError(
            path,
            f"item {table.item_id[index]} is negative: item ids are 0 or more",
            row=row_of(index),
            column="item_id",
        )
    check_unique(path, PURCHASES_COLUMNS, (table.purchase_event_id, table.item_id))
    return table


def read_sessions(path: Path) -> Sessions:
    cols = read_string_columns(path, SESSIONS_COLUMNS)
    sessions = Sessions(
        path=path,
        session_id=parse_ids(cols["session_id"], path, "session_id"),
        action_number=parse_ids(cols["action_number"], path, "action_number"),
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
        conversation_id=parse_ids(cols["conversation_id"], path, "conversation_id"),
        sentence_number=parse_ids(cols["sentence_number"], path, "sentence_number"),
        sentence_speaker=np.asarray(cols["sentence_speaker"].to_pylist(), dtype=object),
    )
    if kind == "keywords":
        sentences.keywords = parse_id_lists(cols["keywords"], path, "keywords")
    else:
        empty = pc.equal(pc.utf8_trim_whitespace(cols["text"]), "").to_numpy(zero_copy_only=False)
        if empty.any():
            raise DataError(path, "empty sentence text", row=row_of(np.argmax(empty)), column="text")
        sentences.text = np.asarray(cols["text"].to_pylist(), dtype=object)
    check_unique(
        path, ("conversation_id", "sentence_number"), (sentences.conversation_id, sentences.sentence_number)
    )
    return sentences


def read_keyword_mapping(path: Path) -> dict[str, int]:
    cols = read_string_columns(path, KEYWORD_MAPPING_COLUMNS)
    ids = parse_ids(cols["keyword_id"], path, "keyword_id")
    words = [w.strip() for w in cols["word"].to_pylist()]
    mapping: dict[str, int] = {}
    for index, word in enumerate(words):
        if not word:
            raise DataError(path, "empty word", row=row_of(index), column="word")
        if word in mapping:
            raise DataError(path, f"word {show_cell(word)} is mapped twice", row=row_of(index), column="word")
        mapping[word] = int(ids[index])
    return mapping


# --------------------------------------------------------------------------------------------------- dataset
def _dangling(ids: np.ndarray, known: np.ndarray) -> np.ndarray:
    """(R,) bool: rows whose optional id (float64, NaN where empty) is set and not among the int64 ``known``.
    Compared as integers: as floats, a known id beyond 2**53 would match its neighbour."""
    present = ~np.isnan(ids)
    missing = np.zeros(len(ids), dtype=bool)
    missing[present] = ~np.isin(ids[present].astype(np.int64), known)
    return missing


def _pair_keys(table: PairTable, pe_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
    """One int64 per (PE, item) row from dense positions; the raw ids multiplied together could overflow."""
    return np.searchsorted(pe_ids, table.purchase_event_id) * len(item_ids) + np.searchsorted(
        item_ids, table.item_id
    )


def load_released(root: str | Path, *, need_embeddings_or_text: bool = True) -> ReleasedDataset:
    """Read and cross-check every small file of a dataset folder (embedding parts are located, not read).

    Cross-checks: every PE in users has purchases (a PE without items is an error), purchases and post-filter
    name only known PEs, the item set (the items purchased anywhere) and the items of the post-filter are the
    same, every referenced session / conversation exists in the session / keyword file.
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
                row=row_of(index),
                column="purchase_event_id",
            )
    without_items = ~np.isin(users.purchase_event_id, purchases.purchase_event_id)
    if without_items.any():
        index = int(np.argmax(without_items))
        raise DataError(
            purchases.path,
            f"purchase event {users.purchase_event_id[index]} ({USERS_FILE} row {row_of(index)}) has no purchased items",
            column="purchase_event_id",
        )
    item_set = np.unique(purchases.item_id)
    # A purchased item that no post-filter lists would become an item of its own that no PE can be recommended:
    # a typo in an item id, not an item.
    listed = np.unique(post_filter.item_id)
    unknown = ~np.isin(purchases.item_id, listed)
    if unknown.any():
        index = int(np.argmax(unknown))
        raise DataError(
            purchases.path,
            f"item {purchases.item_id[index]} is not a known item: no row of {POST_FILTER_FILE} lists it "
            f"(items there: {format_id_set(listed)})",
            row=row_of(index),
            column="item_id",
        )
    outside = ~np.isin(post_filter.item_id, item_set)
    if outside.any():
        index = int(np.argmax(outside))
        raise DataError(
            post_filter.path,
            f"item {post_filter.item_id[index]} is outside the item set (items purchased in {PURCHASES_FILE}: "
            f"{format_id_set(item_set)})",
            row=row_of(index),
            column="item_id",
        )

    # Dangling references from users.
    dangling = _dangling(users.session_id, sessions.session_id)
    if dangling.any():
        index = int(np.argmax(dangling))
        raise DataError(
            users.path,
            f"session {format_id(users.session_id[index])} does not appear in {SESSIONS_FILE}",
            row=row_of(index),
            column="session_id",
        )
    dangling = _dangling(users.conversation_id, keywords.conversation_id)
    if dangling.any():
        index = int(np.argmax(dangling))
        raise DataError(
            users.path,
            f"conversation {format_id(users.conversation_id[index])} does not appear in {keywords.path.name}",
            row=row_of(index),
            column="conversation_id",
        )
    if text is not None:
        dangling = _dangling(users.conversation_id, text.conversation_id)
        if dangling.any() and not parts:
            index = int(np.argmax(dangling))
            raise DataError(
                users.path,
                f"conversation {format_id(users.conversation_id[index])} has no sentences in {TEXT_FILE} to embed",
                row=row_of(index),
                column="conversation_id",
            )

    notes = {}
    # Tolerated, reported: a PE without post-filter rows can never be recommended anything; a purchased item
    # missing from the PE's post-filter can never be hit.
    notes["pes_without_post_filter"] = int((~np.isin(pe_ids, post_filter.purchase_event_id)).sum())
    notes["purchases_not_in_post_filter"] = int(
        (~np.isin(_pair_keys(purchases, pe_ids, item_set), _pair_keys(post_filter, pe_ids, item_set))).sum()
    )

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
