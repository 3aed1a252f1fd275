"""The PEs and their events as index arrays (``Layout``), read from data_users.csv alone, and what follows from it
without the vocabularies: the purchase matrices, the session events a tag filter emptied, the per-PE mean of the
conversation embeddings.

A PE's conversation vector is the mean over all sentences of all its conversation events (sentence-weighted, a
conversation listed twice counts twice); a session left without any tag of the tag vocabulary is not an event
(``fidelity.vocabulary.empty_sessions: drop``; the PE's subset still comes from data_users.csv).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mmrec_ray.data.csvparse import FIRST_DATA_ROW
from mmrec_ray.data.embedding_csv import EMBEDDING_DIR
from mmrec_ray.data.ingest import EmbeddingAccumulator
from mmrec_ray.data.released import TEXT_FILE, ReleasedDataset
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_PAD, EVENT_SESSION, left_align, test_mask
from mmrec_ray.errors import DataError

PE_BLOCK = 4096  # PEs per block when averaging conversation embeddings per PE (bounds memory)


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


def check_conversations_embedded(ds: ReleasedDataset, layout: Layout, acc: EmbeddingAccumulator) -> None:
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
