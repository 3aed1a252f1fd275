"""The model-ready arrays of a prepared dataset (SPEC 4) — the contract between `prepare` and every model.

Shapes: N purchase events (PEs), T = max events per PE (10), J items, V vocabulary entries (action tags and
conversation keywords share one ID space), D sentence-embedding width, C unique conversations, S unique sessions.

Events of a PE are left-aligned in chronological order (``event_number``); padded steps have kind 0 and row -1.
An event's features live in per-conversation / per-session tables, indexed by ``event_row``: a conversation that
appears in several PEs (later PEs re-include earlier history) is stored once. A session whose tags the vocabulary
filter removed entirely is not an event (``fidelity.vocabulary.empty_sessions: drop``, the reference), so a PE
may have fewer events than ``data_users.csv`` lists — even none — while its ``subset`` and ``has_*`` flags
still come from data_users.csv.

The multi-hots share V columns (``vocabulary``): the session models read ``session_tags`` (the tag vocabulary's
columns, ``tag_columns``); the Keyword model reads ``conversation_keywords`` and ``session_keywords`` (its own
vocabulary, ``keyword_columns``: one filter over sentences and actions pooled, or the union of the tag and
keyword filters). The last three are optional: without them Keyword reads ``session_tags`` and every column.

``fidelity.keyword.row_features: reference`` (a defect of model_keyword.py, see mmrec_ray/data/vocabulary_fit.py
``RowMixing``) gives a training PE's Keyword events their own vectors: ``keyword_mixed`` holds them (distinct
vectors only) and ``keyword_mixed_events`` names the events that read one instead of the per-conversation /
per-session tables, by (PE, kind, row, occurrence) rather than by step, so that transforms which reorder a PE's
events (the shuffle study) keep each event's vector. Both are absent otherwise.

Stored as one ``.npy`` per field plus ``meta.json`` in ``RUN_DIR/prepared/tensors/``; loaded memory-mapped.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrec_ray.io import atomic_write_json, atomic_write_npy

EVENT_PAD, EVENT_CONVERSATION, EVENT_SESSION = 0, 1, 2
SUBSET_CONVERSATIONS_ONLY, SUBSET_SESSIONS_ONLY, SUBSET_INTERSECTION = 1, 2, 3
SUBSET_NAMES = {
    SUBSET_CONVERSATIONS_ONLY: "conversations_only",
    SUBSET_SESSIONS_ONLY: "sessions_only",
    SUBSET_INTERSECTION: "intersection",
}
TEST_FRACTION = 0.1  # SPEC 4: test = the latest 10 % of PEs by id


def left_align(keep: np.ndarray, *columns: tuple[np.ndarray, int]) -> list[np.ndarray]:
    """Move each PE's kept steps to the front, in their order (a stable argsort of ~keep); every other step
    becomes the column's fill value. keep (N, T) bool; each column (array (N, T), fill) -> array (N, T)."""
    order = np.argsort(~keep, axis=1, kind="stable")
    return [np.take_along_axis(np.where(keep, values, fill), order, axis=1) for values, fill in columns]


@dataclass
class PreparedData:
    """Model-ready arrays. See the module docstring for the shape letters."""

    purchase_event_id: np.ndarray  # (N,) int64, ascending
    user_id: np.ndarray  # (N,) int64
    item_ids: np.ndarray  # (J,) int64: column j of targets/scores is item item_ids[j]
    vocabulary: np.ndarray  # (V,) int64: column v of the multi-hots is tag/keyword id vocabulary[v]
    event_kind: np.ndarray  # (N, T) int8: EVENT_PAD / EVENT_CONVERSATION / EVENT_SESSION
    event_row: np.ndarray  # (N, T) int32: row in conversation_* (kind 1) or session_tags (kind 2); -1 = pad
    n_events: np.ndarray  # (N,) int16
    conversation_id: np.ndarray  # (C,) int64: original id of each conversation row
    conversation_embedding: np.ndarray  # (C, D) float32: mean of the conversation's sentence embeddings
    conversation_keywords: np.ndarray  # (C, V) uint8: OR of the sentences' keywords (in vocabulary)
    conversation_n_sentences: np.ndarray  # (C,) int32
    session_id: np.ndarray  # (S,) int64: original id of each session row
    session_tags: np.ndarray  # (S, V) uint8: OR (max-pool, eq. 2) of the actions' tags (in vocabulary)
    pe_conversation_embedding: (
        np.ndarray
    )  # (N, D) float32: mean over all sentences of all the PE's conversations; 0 if none
    has_conversation: np.ndarray  # (N,) bool
    has_session: np.ndarray  # (N,) bool
    targets: np.ndarray  # (N, J) uint8 multi-hot of purchased items
    post_filter: np.ndarray  # (N, J) bool: items purchasable at that time (applied at evaluation only)
    is_test: np.ndarray  # (N,) bool: SPEC 4 split
    subset: np.ndarray  # (N,) int8: SUBSET_* from data_users.csv (every PE lists at least one event there)
    session_keywords: np.ndarray | None = None  # (S, V) uint8: the actions' tags in the Keyword vocabulary
    tag_columns: np.ndarray | None = None  # (V,) bool: columns of the tag vocabulary (session models)
    keyword_columns: np.ndarray | None = None  # (V,) bool: columns of the Keyword model's vocabulary
    # row_features=reference only: (M, V) uint8 distinct Keyword vectors of training events mixed by the defect
    keyword_mixed: np.ndarray | None = None
    # row_features=reference only: (E, 5) int64 [PE index, kind, row, occurrence, row of keyword_mixed], one per
    # training event whose vector differs from its table's; occurrence = earlier steps of the PE with that event
    keyword_mixed_events: np.ndarray | None = None
    meta: dict = field(default_factory=dict)  # vocab thresholds, dims, drops, data fingerprint

    # ------------------------------------------------------------------ sizes
    @property
    def num_pes(self) -> int:
        return int(self.purchase_event_id.shape[0])

    @property
    def num_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.vocabulary.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.conversation_embedding.shape[1])

    @property
    def max_events(self) -> int:
        return int(self.event_kind.shape[1])

    @property
    def keyword_session_tags(self) -> np.ndarray:
        """(S, V) uint8: a session as the Keyword model sees it (``session_tags`` when not stored)."""
        return self.session_tags if self.session_keywords is None else self.session_keywords

    @property
    def keyword_column_mask(self) -> np.ndarray:
        """(V,) bool: the Keyword model's columns (every column when not stored)."""
        if self.keyword_columns is None:
            return np.ones(self.vocab_size, dtype=bool)
        return np.asarray(self.keyword_columns, dtype=bool)

    # ------------------------------------------------------------------ views
    def keyword_steps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The Keyword model's events under ``fidelity.keyword.empty_events: drop``: only the events whose
        multi-hot holds at least one id of its vocabulary, in order, left-aligned (the reference drops the other
        conversation and session rows before building the sequences).

        Returns (kind (N, T) int8 with EVENT_PAD, rows (N, T) int32 with -1, lengths (N,) int64).
        """
        kind, row, _, lengths = self.keyword_layout()
        return kind, row, lengths

    def keyword_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``keyword_steps`` plus, aligned with it, mix (N, T) int64: the ``keyword_mixed`` row of each step, -1
        where the step reads the conversation / session tables. An event is kept when the vector it reads holds
        an id, so under ``row_features: reference`` an event emptied by the filter may live on its partners' ids,
        as in the reference. Returns (kind, rows, mix, lengths)."""
        kind = np.asarray(self.event_kind)
        row = np.asarray(self.event_row)
        mix = self.keyword_event_mix()
        conversation_has = np.asarray(self.conversation_keywords).any(axis=1)  # (C,)
        session_has = np.asarray(self.keyword_session_tags).any(axis=1)  # (S,)
        keep = np.zeros(kind.shape, dtype=bool)
        at = kind == EVENT_CONVERSATION
        keep[at] = conversation_has[row[at]]
        at = kind == EVENT_SESSION
        keep[at] = session_has[row[at]]
        at = mix >= 0
        if at.any():
            keep[at] = np.asarray(self.keyword_mixed).any(axis=1)[mix[at]]
        kind, row, mix = left_align(keep, (kind, EVENT_PAD), (row, -1), (mix, -1))
        return kind.astype(np.int8), row.astype(np.int32), mix, keep.sum(axis=1).astype(np.int64)

    def keyword_event_mix(self) -> np.ndarray:
        """(N, T) int64, aligned with ``event_kind``: the ``keyword_mixed`` row of each step's event, -1 where it
        reads the conversation / session tables (no mixing, test PEs, padding)."""
        kind = np.asarray(self.event_kind)
        out = np.full(kind.shape, -1, dtype=np.int64)
        if self.keyword_mixed_events is None or len(self.keyword_mixed_events) == 0:
            return out
        row = np.asarray(self.event_row)
        events = np.asarray(self.keyword_mixed_events, dtype=np.int64)
        real = kind != EVENT_PAD
        pe = np.broadcast_to(np.arange(kind.shape[0])[:, None], kind.shape)
        occurrence = event_occurrence(kind, row)
        shape = (kind.shape[0], 3, int(max(row.max(), events[:, 2].max())) + 1, kind.shape[1])
        keys = np.ravel_multi_index((pe[real], kind[real], row[real], occurrence[real]), shape)
        stored = np.ravel_multi_index(tuple(events[:, :4].T), shape)
        order = np.argsort(stored, kind="stable")
        position = np.minimum(np.searchsorted(stored[order], keys), len(stored) - 1)
        hit = stored[order][position] == keys
        out[real] = np.where(hit, events[order[position], 4], -1)
        return out

    def modality_rows(self, kind: int) -> tuple[np.ndarray, np.ndarray]:
        """Left-aligned rows of one modality only, in chronological order.

        Returns (rows (N, T) int32 with -1 padding, lengths (N,) int64): e.g. the Web Session model's GRU input.
        """
        mask = self.event_kind == kind
        # A stable argsort of ~mask moves the modality's steps to the front and keeps their order.
        order = np.argsort(~mask, axis=1, kind="stable")
        rows = np.take_along_axis(np.where(mask, self.event_row, -1), order, axis=1).astype(np.int32)
        return rows, mask.sum(axis=1).astype(np.int64)

    def train_indices(self, modality: str = "all") -> np.ndarray:
        """Indices of training PEs (ascending PE id) that a model with this input subset trains on.

        modality: "all", "conversation" (has a conversation), "session" (has a session), "both" (has both),
        "keyword" (has an event the Keyword model keeps, see ``keyword_steps``).
        """
        keep = ~np.asarray(self.is_test)
        if modality == "keyword":
            keep &= self.keyword_steps()[2] > 0
        elif modality == "conversation":
            keep &= self.has_conversation
        elif modality == "session":
            keep &= self.has_session
        elif modality == "both":
            keep &= self.has_conversation & self.has_session
        elif modality != "all":
            raise ValueError(f"unknown modality {modality!r}")
        return np.flatnonzero(keep)

    def split_validation(self, indices: np.ndarray, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """SPEC 4: validation = the last ``fraction`` (by PE id) of a model's own training subset."""
        indices = np.asarray(indices)
        indices = indices[np.argsort(self.purchase_event_id[indices], kind="stable")]
        n_val = int(round(len(indices) * fraction))
        if n_val == 0 or n_val >= len(indices):
            raise ValueError(f"cannot hold out {fraction} of {len(indices)} training PEs for validation")
        return indices[:-n_val], indices[-n_val:]

    def test_indices(self) -> np.ndarray:
        return np.flatnonzero(self.is_test)

    # ------------------------------------------------------------------ storage
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for f in dataclasses.fields(self):
            if f.name == "meta":
                continue
            if getattr(self, f.name) is None:  # an optional array: no stale file from an earlier save
                (directory / f"{f.name}.npy").unlink(missing_ok=True)
                continue
            atomic_write_npy(directory / f"{f.name}.npy", np.ascontiguousarray(getattr(self, f.name)))
        # meta.json last: its presence marks a complete write.
        atomic_write_json(directory / "meta.json", self.meta)
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> PreparedData:
        directory = Path(directory)
        if not (directory / "meta.json").exists():
            raise FileNotFoundError(f"{directory}: no prepared tensors here (run `mmrec prepare` first)")
        arrays = {}
        for f in dataclasses.fields(cls):
            path = directory / f"{f.name}.npy"
            if f.name == "meta" or (f.default is None and not path.exists()):  # an optional array not stored
                continue
            arrays[f.name] = np.load(path, mmap_mode="r" if mmap else None)
        return cls(**arrays, meta=json.loads((directory / "meta.json").read_text()))


def test_mask(purchase_event_id: np.ndarray) -> np.ndarray:
    """SPEC 4 split: test = PEs whose rank (1-based, by id) is >= round(0.9 * #PE); with ids 1..N: id >= round(0.9 N).

    Example: 62,401 PEs -> 56,160 train and 6,241 test.
    """
    ids = np.asarray(purchase_event_id)
    order = np.argsort(ids, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, len(ids) + 1)
    return rank >= round((1 - TEST_FRACTION) * len(ids))


test_mask.__test__ = False  # not a pytest test, despite its name


def event_occurrence(kind: np.ndarray, row: np.ndarray) -> np.ndarray:
    """(N, T) int64: for each step, how many earlier steps of its PE hold the same event (kind, row); 0 at
    padding. Names one of a PE's repeated events (a session listed twice) independently of the other events."""
    n, t = kind.shape
    pe = np.repeat(np.arange(n, dtype=np.int64), t)
    code = kind.astype(np.int64).ravel() * (int(row.max(initial=0)) + 2) + row.astype(np.int64).ravel() + 1
    order = np.lexsort((np.tile(np.arange(t), n), code, pe))
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = (pe[order][1:] != pe[order][:-1]) | (code[order][1:] != code[order][:-1])
    starts = np.maximum.accumulate(np.where(new_group, np.arange(len(order)), 0))
    out = np.empty(len(order), dtype=np.int64)
    out[order] = np.arange(len(order)) - starts
    return np.where(kind == EVENT_PAD, 0, out.reshape(n, t))


def subset_labels(has_conversation: np.ndarray, has_session: np.ndarray) -> np.ndarray:
    out = np.zeros(len(has_conversation), dtype=np.int8)
    out[has_conversation & ~has_session] = SUBSET_CONVERSATIONS_ONLY
    out[~has_conversation & has_session] = SUBSET_SESSIONS_ONLY
    out[has_conversation & has_session] = SUBSET_INTERSECTION
    return out
