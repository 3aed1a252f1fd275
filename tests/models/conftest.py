"""A tiny synthetic PreparedData shared by the model tests: ~200 PEs, all three subsets, train/test split, and
a learnable signal (a latent need per PE drives the purchased item and shows in both modalities)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_PAD,
    EVENT_SESSION,
    PreparedData,
    subset_labels,
    test_mask,
)

NUM_ITEMS, VOCAB, DIM, MAX_EVENTS = 5, 7, 6, 4


def make_prepared(num_pes: int = 200, seed: int = 0, max_events: int = MAX_EVENTS) -> PreparedData:
    rng = np.random.default_rng(seed)
    need = rng.integers(0, NUM_ITEMS, num_pes)
    kind_of_pe = rng.choice(3, num_pes, p=[0.25, 0.35, 0.4])  # 0 conversation only, 1 session only, 2 both
    event_kind = np.full((num_pes, max_events), EVENT_PAD, dtype=np.int8)
    event_row = np.full((num_pes, max_events), -1, dtype=np.int32)
    conversation_embedding, conversation_keywords, session_tags = [], [], []
    for pe in range(num_pes):
        length = int(rng.integers(1, max_events + 1))
        if kind_of_pe[pe] == 0:
            kinds = [EVENT_CONVERSATION] * length
        elif kind_of_pe[pe] == 1:
            kinds = [EVENT_SESSION] * length
        else:
            length = max(length, 2)
            kinds = [EVENT_CONVERSATION, EVENT_SESSION] + list(rng.choice([1, 2], length - 2))
            rng.shuffle(kinds)
        for step, kind in enumerate(kinds):
            event_kind[pe, step] = kind
            if kind == EVENT_CONVERSATION:
                vector = rng.normal(0, 0.5, DIM).astype(np.float32)
                vector[need[pe] % DIM] += 2.0
                keywords = (rng.random(VOCAB) < 0.15).astype(np.uint8)
                keywords[need[pe]] = 1
                event_row[pe, step] = len(conversation_embedding)
                conversation_embedding.append(vector)
                conversation_keywords.append(keywords)
            else:
                tags = (rng.random(VOCAB) < 0.2).astype(np.uint8)
                tags[need[pe]] = 1
                event_row[pe, step] = len(session_tags)
                session_tags.append(tags)
    conversation_embedding = np.array(conversation_embedding, dtype=np.float32)
    has_conversation = (event_kind == EVENT_CONVERSATION).any(axis=1)
    has_session = (event_kind == EVENT_SESSION).any(axis=1)
    pe_conversation = np.zeros((num_pes, DIM), dtype=np.float32)
    for pe in np.flatnonzero(has_conversation):
        rows = event_row[pe][event_kind[pe] == EVENT_CONVERSATION]
        pe_conversation[pe] = conversation_embedding[rows].mean(axis=0)
    targets = np.zeros((num_pes, NUM_ITEMS), dtype=np.uint8)
    targets[np.arange(num_pes), need] = 1
    extra = rng.random(num_pes) < 0.2
    targets[extra, rng.integers(0, NUM_ITEMS, int(extra.sum()))] = 1
    ids = np.arange(1, num_pes + 1, dtype=np.int64)
    return PreparedData(
        purchase_event_id=ids,
        user_id=ids * 10,
        item_ids=np.arange(100, 100 + NUM_ITEMS, dtype=np.int64),
        vocabulary=np.arange(1, VOCAB + 1, dtype=np.int64),
        event_kind=event_kind,
        event_row=event_row,
        n_events=(event_kind != EVENT_PAD).sum(axis=1).astype(np.int16),
        conversation_id=np.arange(len(conversation_embedding), dtype=np.int64),
        conversation_embedding=conversation_embedding,
        conversation_keywords=np.array(conversation_keywords, dtype=np.uint8),
        conversation_n_sentences=np.full(len(conversation_embedding), 3, dtype=np.int32),
        session_id=np.arange(len(session_tags), dtype=np.int64),
        session_tags=np.array(session_tags, dtype=np.uint8),
        pe_conversation_embedding=pe_conversation,
        has_conversation=has_conversation,
        has_session=has_session,
        targets=targets,
        post_filter=np.ones((num_pes, NUM_ITEMS), dtype=bool),
        is_test=test_mask(ids),
        subset=subset_labels(has_conversation, has_session),
        meta={"fingerprint": f"tiny-{num_pes}-{seed}"},
    )


def with_extra_padding(data: PreparedData, extra_steps: int) -> PreparedData:
    """The same data with T extended by ``extra_steps`` padded steps (kind 0, row -1)."""
    n = data.num_pes
    return dataclasses.replace(
        data,
        event_kind=np.concatenate([data.event_kind, np.zeros((n, extra_steps), dtype=np.int8)], axis=1),
        event_row=np.concatenate([data.event_row, np.full((n, extra_steps), -1, dtype=np.int32)], axis=1),
    )


@pytest.fixture(scope="session")
def tiny_data() -> PreparedData:
    return make_prepared()


@pytest.fixture
def fast_training() -> TrainingConfig:
    return TrainingConfig(max_epochs=2, patience=2, device="cpu", num_threads=1)


def small_params(name: str, batch_size: int = 32) -> ModelParams:
    from mmrec_ray.models.params import default_params

    return dataclasses.replace(default_params(name), batch_size=batch_size, units=8, num_anchors=10)


@pytest.fixture
def tiny_params():
    from mmrec_ray.models import registry

    return {name: small_params(name) for name in registry.names(include_components=True)}
