"""Tiny hand-made prepared datasets and predictions for the evaluation tests."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.data.tensors import (
    EVENT_CONVERSATION,
    EVENT_SESSION,
    SUBSET_CONVERSATIONS_ONLY,
    SUBSET_INTERSECTION,
    SUBSET_SESSIONS_ONLY,
    PreparedData,
)
from mmrec_ray.evaluation.predictions import scores_to_frame, write_predictions
from mmrec_ray.models.registry import PAPER_MODELS

ALL_MODELS = PAPER_MODELS


def tiny_prepared(n_pes: int = 12, n_test: int = 6, num_items: int = 4, seed: int = 0) -> PreparedData:
    """PE ids 1..n_pes (the last n_test are test), item ids 11, 12, ...; subsets cycle conv-only, sessions-only,
    intersection; each PE buys one or two items; every item is purchasable except the last for odd PEs."""
    rng = np.random.default_rng(seed)
    subset = np.array(
        [(SUBSET_CONVERSATIONS_ONLY, SUBSET_SESSIONS_ONLY, SUBSET_INTERSECTION)[i % 3] for i in range(n_pes)],
        dtype=np.int8,
    )
    has_c = subset != SUBSET_SESSIONS_ONLY
    has_s = subset != SUBSET_CONVERSATIONS_ONLY
    kinds = np.zeros((n_pes, 2), dtype=np.int8)
    rows = np.full((n_pes, 2), -1, dtype=np.int32)
    for i in range(n_pes):
        step = 0
        if has_c[i]:
            kinds[i, step], rows[i, step] = EVENT_CONVERSATION, 0
            step += 1
        if has_s[i]:
            kinds[i, step], rows[i, step] = EVENT_SESSION, 0
    targets = np.zeros((n_pes, num_items), dtype=np.uint8)
    targets[np.arange(n_pes), rng.integers(0, num_items - 1, n_pes)] = 1
    targets[rng.random(n_pes) < 0.3, 0] = 1
    post_filter = np.ones((n_pes, num_items), dtype=bool)
    post_filter[1::2, -1] = False
    is_test = np.zeros(n_pes, dtype=bool)
    is_test[-n_test:] = True
    return PreparedData(
        purchase_event_id=np.arange(1, n_pes + 1, dtype=np.int64),
        user_id=np.arange(1, n_pes + 1, dtype=np.int64),
        item_ids=np.arange(11, 11 + num_items, dtype=np.int64),
        vocabulary=np.array([1, 2, 3], dtype=np.int64),
        event_kind=kinds,
        event_row=rows,
        n_events=(kinds > 0).sum(axis=1).astype(np.int16),
        conversation_id=np.array([100], dtype=np.int64),
        conversation_embedding=np.zeros((1, 2), dtype=np.float32),
        conversation_keywords=np.zeros((1, 3), dtype=np.uint8),
        conversation_n_sentences=np.array([4], dtype=np.int32),
        session_id=np.array([200], dtype=np.int64),
        session_tags=np.zeros((1, 3), dtype=np.uint8),
        pe_conversation_embedding=np.zeros((n_pes, 2), dtype=np.float32),
        has_conversation=has_c,
        has_session=has_s,
        targets=targets,
        post_filter=post_filter,
        is_test=is_test,
        subset=subset,
        meta={"source": "tests/evaluation"},
    )


def served_mask(data: PreparedData, model: str) -> np.ndarray:
    """Which test PEs a model of this name serves (the paper's single-modality models serve one modality)."""
    test = data.test_indices()
    if model == "conversation":
        return np.asarray(data.has_conversation)[test]
    if model == "session":
        return np.asarray(data.has_session)[test]
    return np.ones(len(test), dtype=bool)


def model_scores(data: PreparedData, model: str, seed: int, skill: float) -> np.ndarray:
    """Test scores: ``skill`` = probability that a PE's scores are the truth (else noise); NaN rows not served."""
    rng = np.random.default_rng([zlib.crc32(model.encode()), seed])
    test = data.test_indices()
    targets = np.asarray(data.targets)[test].astype(np.float64)
    noise = rng.random(targets.shape)
    good = rng.random(len(test)) < skill
    scores = np.where(good[:, None], targets + 0.1 * noise, noise)
    scores[~served_mask(data, model)] = np.nan
    return scores


def write_model_predictions(
    data: PreparedData, directory: Path, models=ALL_MODELS, seeds=(0, 1, 2), skill: dict | None = None
) -> list[Path]:
    paths = []
    test_ids = np.asarray(data.purchase_event_id)[data.test_indices()]
    for model in models:
        frames = [
            scores_to_frame(
                model,
                seed,
                test_ids,
                data.item_ids,
                model_scores(data, model, seed, (skill or {}).get(model, 0.5)),
            )
            for seed in seeds
        ]
        paths.append(write_predictions(directory / f"{model}.parquet", pd.concat(frames, ignore_index=True)))
    return paths


def bootstrap_row(
    model: str, subset: str, mean: float, ci_low: float, ci_high: float, n_pes: int, metric="hr"
):
    """One row of results/bootstrap_ci.csv at k = 3."""
    return dict(
        model=model,
        subset=subset,
        metric=metric,
        k=3,
        n_pes=n_pes,
        mean=mean,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=0.95,
    )


def pairwise_row(
    subset: str, a: str, b: str, value_a: float, value_b: float, p_value: float, n_pes: int, **rest
):
    """One row of results/pairwise_tests.csv (HR@3, clustered CMH); ``rest``: statistic, p_holm, significant."""
    return dict(
        subset=subset,
        metric="hr",
        k=3,
        model_a=a,
        model_b=b,
        test="cmh_clustered_chi2",
        n_pes=n_pes,
        value_a=value_a,
        value_b=value_b,
        p_value=p_value,
        **rest,
    )
