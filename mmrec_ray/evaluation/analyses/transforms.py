"""Data transforms of the analyses; each returns a new ``PreparedData`` (the feature tables and every other PE
are untouched).

- ``shuffle_events``: the real events of each PE in a random (seeded) order; padding stays at the end, so the
  modality-only views (``modality_rows``) follow the new order. Only the order changes: every PE keeps the same
  multiset of (kind, row) events, the same flags and the same PE-level conversation vector (a mean: order-free).
- ``keep_most_recent``: each selected PE keeps only its last ``n`` events (the most recent ones), left-aligned.
- ``hide_modality``: the selected PEs lose every event of one modality, the rest is left-aligned.

The last two update ``n_events``, ``has_conversation``, ``has_session`` and the PE-level conversation vector
(the sentence-weighted mean of the kept conversations, zero when none is left) so that every model — including
routing models such as Late Fusion — sees a consistent PE. ``subset`` keeps the PE's original type: the
analyses report by the type the user really is, not by what is left after truncation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_PAD, EVENT_SESSION, PreparedData, left_align

MODALITY_KIND = {"conversation": EVENT_CONVERSATION, "session": EVENT_SESSION}


def _with_events(
    data: PreparedData, event_kind: np.ndarray, event_row: np.ndarray, changed: np.ndarray, note: str
) -> PreparedData:
    """A copy of ``data`` with new (left-aligned) events; the per-PE fields derived from the events are
    recomputed for the ``changed`` PEs (N,) bool and copied for the others."""
    event_kind = np.ascontiguousarray(event_kind, dtype=np.int8)
    event_row = np.ascontiguousarray(event_row, dtype=np.int32)
    old_kind = np.asarray(data.event_kind)
    is_conversation = event_kind == EVENT_CONVERSATION
    has_conversation = np.asarray(data.has_conversation).copy()
    has_session = np.asarray(data.has_session).copy()
    has_conversation[changed] = is_conversation[changed].any(axis=1)
    has_session[changed] = (event_kind[changed] == EVENT_SESSION).any(axis=1)
    pe_conversation = np.array(data.pe_conversation_embedding, dtype=np.float32, copy=True)
    # Only PEs that lost a conversation need a new PE-level vector; the others keep theirs bit for bit.
    lost = changed & ((old_kind == EVENT_CONVERSATION).sum(axis=1) != is_conversation.sum(axis=1))
    if lost.any():
        embedding = np.asarray(data.conversation_embedding, dtype=np.float64)
        n_sentences = np.asarray(data.conversation_n_sentences, dtype=np.float64)
        rows = np.flatnonzero(lost)
        total = np.zeros((len(rows), embedding.shape[1]))
        weight = np.zeros(len(rows))
        for step in range(event_kind.shape[1]):
            at = is_conversation[rows, step]
            if not at.any():
                continue
            conversation_rows = event_row[rows[at], step]
            # The PE vector is the mean over all sentences: weight each conversation mean by its sentences.
            w = np.maximum(n_sentences[conversation_rows], 1.0)
            total[at] += w[:, None] * embedding[conversation_rows]
            weight[at] += w
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(weight[:, None] > 0, total / np.maximum(weight, 1e-12)[:, None], 0.0)
        pe_conversation[rows] = mean.astype(np.float32)
    meta = dict(data.meta)
    meta["analysis_transform"] = [*meta.get("analysis_transform", []), note]
    return dataclasses.replace(
        data,
        event_kind=event_kind,
        event_row=event_row,
        n_events=(event_kind != EVENT_PAD).sum(axis=1).astype(np.int16),
        has_conversation=has_conversation,
        has_session=has_session,
        pe_conversation_embedding=pe_conversation,
        meta=meta,
    )


def shuffle_events(data: PreparedData, seed: int | Sequence[int]) -> PreparedData:
    """Permute the real events of every PE at random (``numpy.random.default_rng(seed)``).

    event_kind / event_row (N, T): the first n_events steps of each row are permuted together, padding stays at
    the end; nothing else changes (the flags and the PE-level conversation mean do not depend on order).
    """
    kind = np.asarray(data.event_kind)
    row = np.asarray(data.event_row)
    rng = np.random.default_rng(seed)
    keys = rng.random(kind.shape)
    keys[kind == EVENT_PAD] = np.inf  # padding sorts after every real event and keeps its place
    order = np.argsort(keys, axis=1, kind="stable")
    meta = dict(data.meta)
    meta["analysis_transform"] = [*meta.get("analysis_transform", []), f"shuffle_events(seed={seed})"]
    return dataclasses.replace(
        data,
        event_kind=np.ascontiguousarray(np.take_along_axis(kind, order, axis=1)),
        event_row=np.ascontiguousarray(np.take_along_axis(row, order, axis=1)),
        n_events=np.array(data.n_events, copy=True),
        meta=meta,
    )


def keep_most_recent(data: PreparedData, n: int, pe_mask: np.ndarray | None = None) -> PreparedData:
    """Each PE in ``pe_mask`` (N,) bool (default: the test PEs) keeps only its last ``n`` events — the most
    recent ones, since events are in chronological order — moved to the front; the rest becomes padding."""
    if n < 1:
        raise ValueError(f"keep_most_recent: n must be >= 1, got {n}")
    kind = np.asarray(data.event_kind)
    row = np.asarray(data.event_row)
    pe_mask = np.asarray(data.is_test if pe_mask is None else pe_mask, dtype=bool)
    lengths = (kind != EVENT_PAD).sum(axis=1)
    steps = np.arange(kind.shape[1])
    start = np.where(pe_mask, np.maximum(lengths - n, 0), 0)
    kept = np.where(pe_mask, np.minimum(lengths, n), lengths)
    source = np.minimum(start[:, None] + steps[None, :], kind.shape[1] - 1)
    valid = steps[None, :] < kept[:, None]
    new_kind = np.where(valid, np.take_along_axis(kind, source, axis=1), EVENT_PAD)
    new_row = np.where(valid, np.take_along_axis(row, source, axis=1), -1)
    changed = pe_mask & (lengths > n)
    return _with_events(data, new_kind, new_row, changed, f"keep_most_recent(n={n})")


def hide_modality(data: PreparedData, modality: str, pe_mask: np.ndarray) -> PreparedData:
    """Remove every event of ``modality`` ("conversation" | "session") from the PEs in ``pe_mask`` (N,) bool;
    the remaining events keep their order and are left-aligned."""
    if modality not in MODALITY_KIND:
        raise ValueError(f"hide_modality: modality must be one of {list(MODALITY_KIND)}, got {modality!r}")
    kind = np.asarray(data.event_kind)
    row = np.asarray(data.event_row)
    pe_mask = np.asarray(pe_mask, dtype=bool)
    removed = pe_mask[:, None] & (kind == MODALITY_KIND[modality])
    keep = (kind != EVENT_PAD) & ~removed
    new_kind, new_row = left_align(keep, (kind, EVENT_PAD), (row, -1))
    changed = removed.any(axis=1)
    return _with_events(data, new_kind, new_row, changed, f"hide_modality({modality})")
