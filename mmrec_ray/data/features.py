"""Device-resident features: the prepared tables live on the training device once, and a batch is a set of
PE indices whose tensors are gathered lazily (no per-batch Python collation).

Shapes: B PEs in a batch, T max events, D embedding width, V vocabulary, V_k its Keyword columns, J items.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION, PreparedData


class FeatureStore:
    """All model inputs of a prepared dataset as torch tensors on one device."""

    def __init__(self, data: PreparedData, device: str | torch.device = "cpu"):
        self.data = data
        self.device = torch.device(device)
        dev = self.device

        def t(array, dtype):
            # np.array copies: prepared arrays are read-only memory maps, which torch refuses to wrap.
            return torch.from_numpy(np.array(array)).to(device=dev, dtype=dtype)

        self.event_kind = t(data.event_kind, torch.long)  # (N, T)
        self.event_row = t(data.event_row, torch.long)  # (N, T)
        self.n_events = t(data.n_events, torch.long)  # (N,)
        session_rows, session_lengths = data.modality_rows(EVENT_SESSION)
        conversation_rows, conversation_lengths = data.modality_rows(EVENT_CONVERSATION)
        self.session_rows = t(session_rows, torch.long)  # (N, T): session-only steps, left-aligned
        self.session_lengths = t(session_lengths, torch.long)
        self.conversation_rows = t(conversation_rows, torch.long)
        self.conversation_lengths = t(conversation_lengths, torch.long)
        # One extra all-zero row at the end so that padding (-1) gathers zeros.
        self.conversation_table = _with_zero_row(t(data.conversation_embedding, torch.float32))  # (C+1, D)
        self.keyword_table = _with_zero_row(t(data.conversation_keywords, torch.float32))  # (C+1, V)
        self.session_table = _with_zero_row(t(data.session_tags, torch.float32))  # (S+1, V)
        self.pe_conversation = t(data.pe_conversation_embedding, torch.float32)  # (N, D)
        self.has_conversation = t(data.has_conversation, torch.bool)
        self.has_session = t(data.has_session, torch.bool)
        self.targets = t(data.targets, torch.float32)  # (N, J)

    # The Keyword model's inputs, built on first use (other models never pay for them).
    @cached_property
    def session_keyword_table(self) -> torch.Tensor:  # (S+1, V): sessions as Keyword sees them
        if self.data.session_keywords is None:
            return self.session_table
        return _with_zero_row(torch.from_numpy(np.array(self.data.session_keywords)).to(self.device).float())

    @cached_property
    def keyword_columns(self) -> torch.Tensor:  # (V_k,) long: the Keyword vocabulary's columns of V
        return torch.from_numpy(np.flatnonzero(self.data.keyword_column_mask)).to(self.device)

    @property
    def keyword_vocab_size(self) -> int:
        return int(self.keyword_columns.shape[0])

    @cached_property
    def keyword_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(conversations (C+1, V_k), sessions (S+1, V_k)): the Keyword vocabulary's columns only."""
        return (
            self.keyword_table.index_select(1, self.keyword_columns),
            self.session_keyword_table.index_select(1, self.keyword_columns),
        )

    @cached_property
    def _keyword_layout(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        kind, rows, mix, lengths = self.data.keyword_layout()
        dev = self.device
        kind, rows, lengths = (torch.from_numpy(a.astype(np.int64)).to(dev) for a in (kind, rows, lengths))
        return kind, rows, torch.from_numpy(mix).to(dev) if self.keyword_mixing else None, lengths

    @cached_property
    def keyword_steps(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kind (N, T), rows (N, T), lengths (N,)) long: the events that hold a Keyword id, left-aligned
        (``PreparedData.keyword_steps``)."""
        kind, rows, _, lengths = self._keyword_layout
        return kind, rows, lengths

    @property
    def keyword_mixing(self) -> bool:
        """Whether training events read their own vectors (``fidelity.keyword.row_features: reference``)."""
        mixed = self.data.keyword_mixed_events
        return mixed is not None and len(mixed) > 0

    @cached_property
    def keyword_step_mix(self) -> torch.Tensor | None:
        """(N, T) long aligned with ``keyword_steps``: the row of ``keyword_mixed_table``, -1 = the tables."""
        return self._keyword_layout[2]

    @cached_property
    def keyword_event_mix(self) -> torch.Tensor | None:
        """(N, T) long aligned with ``event_kind``: as ``keyword_step_mix``, for every event."""
        if not self.keyword_mixing:
            return None
        return torch.from_numpy(self.data.keyword_event_mix()).to(self.device)

    @cached_property
    def keyword_mixed_table(self) -> torch.Tensor | None:
        """(M+1, V_k) uint8: the training events' own vectors (Keyword columns; kept as bytes, cast per batch)."""
        if not self.keyword_mixing:
            return None
        table = torch.from_numpy(np.array(self.data.keyword_mixed)).to(self.device)
        return _with_zero_row(table.index_select(1, self.keyword_columns))

    @property
    def num_items(self) -> int:
        return int(self.targets.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.session_table.shape[1])

    @property
    def embedding_dim(self) -> int:
        return int(self.conversation_table.shape[1])

    def batch(self, indices: np.ndarray | torch.Tensor) -> Batch:
        index = torch.as_tensor(np.asarray(indices) if not torch.is_tensor(indices) else indices)
        return Batch(self, index.to(device=self.device, dtype=torch.long))

    def iterate(
        self,
        indices: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ):
        """Yield Batches over ``indices``; shuffled with ``generator`` (seeded by the caller) when asked."""
        for chunk in index_batches(indices, batch_size, self.device, shuffle, generator):
            yield Batch(self, chunk)


def index_batches(
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
):
    """Yield (<= batch_size,) long tensors on ``device`` covering ``indices``, permuted on the CPU with
    ``generator`` when asked, so that a seeded run draws the same batches on any device."""
    index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    if shuffle:
        index = index[torch.randperm(len(index), generator=generator)]
    index = index.to(device)
    for start in range(0, len(index), batch_size):
        yield index[start : start + batch_size]


def _with_zero_row(table: torch.Tensor) -> torch.Tensor:
    return torch.cat([table, table.new_zeros((1, table.shape[1]))], dim=0)


def _gather(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table (R+1, F), rows (B, T) with -1 padding -> (B, T, F); -1 maps to the zero row."""
    safe = torch.where(rows < 0, torch.full_like(rows, table.shape[0] - 1), rows)
    return table[safe]


class Batch:
    """A batch of PEs; every tensor is gathered on first use and cached."""

    def __init__(self, store: FeatureStore, index: torch.Tensor):
        self.store = store
        self.index = index  # (B,) rows into the prepared arrays

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @cached_property
    def event_kind(self) -> torch.Tensor:  # (B, T) long: 0 pad, 1 conversation, 2 session
        return self.store.event_kind[self.index]

    @cached_property
    def lengths(self) -> torch.Tensor:  # (B,) number of events
        return self.store.n_events[self.index]

    @cached_property
    def step_mask(self) -> torch.Tensor:  # (B, T) bool, True on real events
        return self.event_kind != 0

    @cached_property
    def is_conversation(self) -> torch.Tensor:  # (B, T) float indicator (the is_conversation input feature)
        return (self.event_kind == EVENT_CONVERSATION).float()

    @cached_property
    def _conversation_rows(self) -> torch.Tensor:  # (B, T) rows of conversation steps, -1 elsewhere
        rows = self.store.event_row[self.index]
        return torch.where(self.event_kind == EVENT_CONVERSATION, rows, torch.full_like(rows, -1))

    @cached_property
    def _session_rows(self) -> torch.Tensor:
        rows = self.store.event_row[self.index]
        return torch.where(self.event_kind == EVENT_SESSION, rows, torch.full_like(rows, -1))

    @cached_property
    def event_conversation(
        self,
    ) -> torch.Tensor:  # (B, T, D): conversation embedding at conversation steps, else 0
        return _gather(self.store.conversation_table, self._conversation_rows)

    @cached_property
    def event_session(self) -> torch.Tensor:  # (B, T, V): session tags at session steps, else 0
        return _gather(self.store.session_table, self._session_rows)

    @cached_property
    def event_keywords(self) -> torch.Tensor:
        """(B, T, V): keywords at conversation steps, tags at session steps (the Keyword vocabulary's ids)."""
        sessions = _gather(self.store.session_keyword_table, self._session_rows)
        return _gather(self.store.keyword_table, self._conversation_rows) + sessions

    def _keyword_events(
        self, kind: torch.Tensor, rows: torch.Tensor, mix: torch.Tensor | None
    ) -> torch.Tensor:
        """kind, rows, mix (B, T) -> (B, T, 1 + V_k): [is_conversation, Keyword's multi-hot]; zeros at padding.
        Steps with mix >= 0 read the event's own vector (``row_features: reference``) instead of the tables."""
        conversations, sessions = self.store.keyword_tables
        is_conversation = kind == EVENT_CONVERSATION
        none = torch.full_like(rows, -1)
        features = _gather(conversations, torch.where(is_conversation, rows, none)) + _gather(
            sessions, torch.where(kind == EVENT_SESSION, rows, none)
        )
        if mix is not None:
            own = _gather(self.store.keyword_mixed_table, mix).float()
            features = torch.where((mix >= 0).unsqueeze(-1), own, features)
        return torch.cat([is_conversation.unsqueeze(-1).float(), features], dim=-1)

    @cached_property
    def keyword_sequence(self) -> torch.Tensor:  # (B, T, 1 + V_k): events holding a Keyword id, left-aligned
        kind, rows, _ = self.store.keyword_steps
        mix = self.store.keyword_step_mix
        return self._keyword_events(
            kind[self.index], rows[self.index], None if mix is None else mix[self.index]
        )

    @cached_property
    def keyword_lengths(self) -> torch.Tensor:  # (B,) steps of keyword_sequence
        return self.store.keyword_steps[2][self.index]

    @cached_property
    def keyword_sequence_all(self) -> torch.Tensor:
        """(B, T, 1 + V_k): every event, empty ones too (their length is ``lengths``)."""
        mix = self.store.keyword_event_mix
        return self._keyword_events(
            self.event_kind, self.store.event_row[self.index], None if mix is None else mix[self.index]
        )

    @cached_property
    def session_sequence(self) -> torch.Tensor:  # (B, T, V): session-only steps, left-aligned
        return _gather(self.store.session_table, self.store.session_rows[self.index])

    @cached_property
    def session_lengths(self) -> torch.Tensor:  # (B,)
        return self.store.session_lengths[self.index]

    @cached_property
    def conversation_sequence(self) -> torch.Tensor:  # (B, T, D): conversation-only steps, left-aligned
        return _gather(self.store.conversation_table, self.store.conversation_rows[self.index])

    @cached_property
    def conversation_lengths(self) -> torch.Tensor:  # (B,)
        return self.store.conversation_lengths[self.index]

    @cached_property
    def pe_conversation(self) -> torch.Tensor:  # (B, D): PE-level mean sentence embedding
        return self.store.pe_conversation[self.index]

    @cached_property
    def has_conversation(self) -> torch.Tensor:  # (B,) bool
        return self.store.has_conversation[self.index]

    @cached_property
    def has_session(self) -> torch.Tensor:  # (B,) bool
        return self.store.has_session[self.index]

    @cached_property
    def targets(self) -> torch.Tensor:  # (B, J) float multi-hot
        return self.store.targets[self.index]
