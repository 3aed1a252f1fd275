"""Fitting the tag and keyword vocabularies on the training PEs (SPEC 4): which rows each frequency filter sees and
how they count, under the prepare-time switches; the filter itself and the share rules are mmrec_ray/data/vocab.py.

The tag vocabulary (session models) is fitted over the actions' tags; the Keyword model's over sentence keywords
and action tags pooled (``fidelity.keyword.frequency_filter: pooled``, the reference) or is the union of a tag and
a keyword filter (``separate``). Both live in one shared ID space (``Vocabulary.ids``, their union).
``fidelity.keyword.row_features: reference`` reproduces a defect of the reference Keyword script for training PEs
(``RowMixing``): a sentence/action row also carries the ids of the other modality's row at the same index label.

The allowed values of every prepare-time switch live here too: ``fit_vocabulary`` is also called without
``prepare`` (``mmrec validate``, tests) and checks its switches itself.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import numpy as np

from mmrec_ray.config import KeywordFidelity, VocabularyFidelity
from mmrec_ray.data.ingest import owner_rows
from mmrec_ray.data.layout import Layout
from mmrec_ray.data.released import IdLists, ReleasedDataset
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION
from mmrec_ray.data.vocab import (
    VOCAB_THRESHOLD,
    FrequencyFilter,
    fit_frequency_filter,
    shared_vocabulary,
)
from mmrec_ray.errors import ConfigError


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
