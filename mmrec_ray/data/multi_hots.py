"""The events' multi-hot vectors over the fitted vocabularies (``Vocabulary.ids``): a session is the OR of its
actions' tags, a conversation the OR of its sentences' keywords; under ``fidelity.keyword.row_features:
reference`` the training events' mixed Keyword vectors (``RowMixing``, stored per training event:
``PreparedData.keyword_mixed``); and what the Keyword model's empty-event rule removes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmrec_ray.data.ingest import owner_rows
from mmrec_ray.data.layout import Layout
from mmrec_ray.data.released import IdLists, ReleasedDataset
from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_PAD,
    EVENT_SESSION,
    PreparedData,
    event_occurrence,
)
from mmrec_ray.data.vocab import multi_hot
from mmrec_ray.data.vocabulary_fit import Vocabulary


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
