"""The model-ready arrays of a prepared dataset (SPEC 4) — the contract between `prepare` and every model.

Shapes: N purchase events (PEs), T = max events per PE (10), J items, V vocabulary entries (action tags and
conversation keywords share one ID space), D sentence-embedding width, C unique conversations, S unique sessions.

Events of a PE are left-aligned in chronological order (``event_number``); padded steps have kind 0 and row -1.
An event's features live in per-conversation / per-session tables, indexed by ``event_row``: a conversation that
appears in several PEs (later PEs re-include earlier history) is stored once.

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
    subset: np.ndarray  # (N,) int8: SUBSET_* (every PE has at least one event)
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

    # ------------------------------------------------------------------ views
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

        modality: "all", "conversation" (has a conversation), "session" (has a session), "both" (has both).
        """
        keep = ~np.asarray(self.is_test)
        if modality == "conversation":
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
            if f.name == "meta":
                continue
            arrays[f.name] = np.load(directory / f"{f.name}.npy", mmap_mode="r" if mmap else None)
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


def subset_labels(has_conversation: np.ndarray, has_session: np.ndarray) -> np.ndarray:
    out = np.zeros(len(has_conversation), dtype=np.int8)
    out[has_conversation & ~has_session] = SUBSET_CONVERSATIONS_ONLY
    out[~has_conversation & has_session] = SUBSET_SESSIONS_ONLY
    out[has_conversation & has_session] = SUBSET_INTERSECTION
    return out
