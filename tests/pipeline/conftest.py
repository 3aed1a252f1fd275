"""Fixtures for the Ray stages: a local Ray for the session, small prepared datasets, tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION, PreparedData, subset_labels, test_mask

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray (2 CPUs, no dashboard) shared by every test that needs one; shut down at the end."""
    from mmrec_ray.pipeline.ray_env import configure_environment

    configure_environment()
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def random_prepared(
    num_pes: int = 240, seed: int = 0, dim: int = 16, vocab: int = 12, items: int = 6
) -> PreparedData:
    """A small PreparedData that satisfies the tensors contract, with a learnable signal: the purchased item
    follows a latent class that both modalities reveal (so validation loss falls when a model learns)."""
    rng = np.random.default_rng(seed)
    max_events = 4
    latent = rng.integers(0, items, num_pes)
    kinds = np.zeros((num_pes, max_events), np.int8)
    rows = np.full((num_pes, max_events), -1, np.int32)
    n_events = rng.integers(1, max_events + 1, num_pes).astype(np.int16)
    conversations, sessions = [], []
    for i in range(num_pes):
        for t in range(n_events[i]):
            if rng.random() < 0.4:
                kinds[i, t] = EVENT_CONVERSATION
                rows[i, t] = len(conversations)
                conversations.append(latent[i])
            else:
                kinds[i, t] = EVENT_SESSION
                rows[i, t] = len(sessions)
                sessions.append(latent[i])
    conversations, sessions = np.array(conversations), np.array(sessions)
    centers = rng.normal(size=(items, dim)).astype(np.float32)
    conversation_embedding = centers[conversations] + 0.5 * rng.normal(size=(len(conversations), dim)).astype(
        np.float32
    )
    conversation_keywords = (rng.random((len(conversations), vocab)) < 0.1).astype(np.uint8)
    conversation_keywords[np.arange(len(conversations)), conversations % vocab] = 1
    session_tags = (rng.random((len(sessions), vocab)) < 0.1).astype(np.uint8)
    session_tags[np.arange(len(sessions)), sessions % vocab] = 1
    has_conversation = (kinds == EVENT_CONVERSATION).any(axis=1)
    has_session = (kinds == EVENT_SESSION).any(axis=1)
    pe_conversation = np.zeros((num_pes, dim), np.float32)
    for i in np.flatnonzero(has_conversation):
        pe_conversation[i] = conversation_embedding[rows[i][kinds[i] == EVENT_CONVERSATION]].mean(axis=0)
    targets = np.zeros((num_pes, items), np.uint8)
    targets[np.arange(num_pes), latent] = 1
    purchase_event_id = np.arange(1, num_pes + 1, dtype=np.int64)
    return PreparedData(
        purchase_event_id=purchase_event_id,
        user_id=purchase_event_id.copy(),
        item_ids=np.arange(1, items + 1, dtype=np.int64),
        vocabulary=np.arange(1, vocab + 1, dtype=np.int64),
        event_kind=kinds,
        event_row=rows,
        n_events=n_events,
        conversation_id=np.arange(len(conversations), dtype=np.int64),
        conversation_embedding=conversation_embedding,
        conversation_keywords=conversation_keywords,
        conversation_n_sentences=np.full(len(conversations), 5, np.int32),
        session_id=np.arange(len(sessions), dtype=np.int64),
        session_tags=session_tags,
        pe_conversation_embedding=pe_conversation,
        has_conversation=has_conversation,
        has_session=has_session,
        targets=targets,
        post_filter=np.ones((num_pes, items), bool),
        is_test=test_mask(purchase_event_id),
        subset=subset_labels(has_conversation, has_session),
        meta={"fingerprint": f"random-{seed}-{num_pes}"},
    )


@pytest.fixture
def prepared_run(tmp_path) -> Path:
    """A run directory whose prepared tensors exist (the state `tune` and `fit` start from)."""
    run_dir = tmp_path / "run"
    random_prepared().save(run_dir / "prepared" / "tensors")
    return run_dir
