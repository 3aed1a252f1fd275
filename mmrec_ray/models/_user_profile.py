"""UiM's enriched user profile (Xu et al., section III-B) as far as this data knows a user at prediction time.

UiM enriches demographic profiles (age, occupation, ...) with mined behaviour. The released data has no
demographics, but it has a ``user_id`` per PE (``data_users.csv`` -> ``PreparedData.user_id``) and PE ids in
time order, so a PE's user can be described by what happened *before* it:

- ``bought`` (J): multi-hot of the items bought in the same user's EARLIER PEs — hence the base products they
  own (the post-filter's rule: a coverage needs its base product). Only labels of PEs whose purchases the
  training data holds are read: a PE is "known" when it is not a test PE. Because test = the latest PEs by id,
  a training PE's earlier PEs are all known; a test PE reads its user's earlier *training* PEs only, and an
  earlier PE that is itself in the test split stays hidden (its purchases are what is being evaluated).
  The PE's own purchases and later PEs are never read. Validation PEs are training PEs, so a validation PE
  does read its user's earlier validation PEs — only early stopping sees that, and it is the information a
  deployed model would have; the test split is the stricter case.
- ``has_earlier``, ``log(1 + #earlier known PEs)``: how established the customer is.
- channel mix of the PE's own history: the shares of conversations and of sessions among its events,
  ``log(1 + n_events)``;
- recency: 1 / (1 + rank) of the most recent conversation and of the most recent session (rank 0 = the last
  event before the purchase; 0 when the PE has none of that kind).

Profile width P = J + 7. Shapes: N PEs, J items, T steps.

Not used, on purpose: the post-filter (``PreparedData.post_filter``) — it lists every item bought in the PE
itself, so reading it would leak the label. Not available: ownership before a user's first PE in the data
(the synthetic generator draws some; nothing records it), purchase dates (only the id order), and demographics.
The prepared tensors hold no per-user purchase history, so it is computed here from ``user_id``,
``purchase_event_id``, ``is_test`` and ``targets``.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch

from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION, PreparedData

PROFILE_EXTRA = 7  # features after the J purchase columns


def profile_width(num_items: int) -> int:
    return num_items + PROFILE_EXTRA


def earlier_purchases(data: PreparedData) -> tuple[np.ndarray, np.ndarray]:
    """(bought (N, J) bool, count (N,) int64): per PE, the items bought in its user's earlier known PEs and how
    many such PEs there are (module docstring)."""
    user = np.asarray(data.user_id)
    n = len(user)
    known = ~np.asarray(data.is_test, dtype=bool)
    order = np.lexsort((np.asarray(data.purchase_event_id), user))  # by user, then time
    targets = np.asarray(data.targets)[order].astype(np.int64) * known[order, None]
    counted = known[order].astype(np.int64)
    # Exclusive prefix sums, restarted at each user's first PE: what that user had bought before this PE.
    before = np.cumsum(targets, axis=0) - targets
    count_before = np.cumsum(counted) - counted
    sorted_user = user[order]
    first = np.ones(n, dtype=bool)
    first[1:] = sorted_user[1:] != sorted_user[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    bought = np.empty((n, targets.shape[1]), dtype=bool)
    count = np.empty(n, dtype=np.int64)
    bought[order] = (before - before[group_start]) > 0
    count[order] = count_before - count_before[group_start]
    return bought, count


def history_features(data: PreparedData) -> np.ndarray:
    """(N, 5) float32: conversation share, session share, log(1 + n_events), recency of the latest conversation
    and of the latest session (module docstring)."""
    kind = np.asarray(data.event_kind)
    n = np.asarray(data.n_events).astype(np.int64)
    rank = n[:, None] - 1 - np.arange(kind.shape[1])[None, :]
    shares = []
    recencies = []
    for event in (EVENT_CONVERSATION, EVENT_SESSION):
        at = kind == event
        shares.append(at.sum(axis=1) / np.maximum(n, 1))
        latest = np.where(at, rank, np.iinfo(np.int64).max).min(axis=1)
        recencies.append(np.where(at.any(axis=1), 1.0 / (1.0 + np.maximum(latest, 0)), 0.0))
    return np.stack([*shares, np.log1p(n), *recencies], axis=1).astype(np.float32)


def profile_features(data: PreparedData) -> np.ndarray:
    """(N, P) float32: [bought (J), has_earlier, log(1 + #earlier), history_features (5)]."""
    bought, count = earlier_purchases(data)
    return np.concatenate(
        [
            bought.astype(np.float32),
            (count > 0).astype(np.float32)[:, None],
            np.log1p(count).astype(np.float32)[:, None],
            history_features(data),
        ],
        axis=1,
    )


class ProfileTables:
    """Profile rows (N, P) on a store's device, computed once per FeatureStore: a model fitted on one store may
    predict on another (the analyses' shuffled or truncated data), whose profiles differ."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[FeatureStore, torch.Tensor] = weakref.WeakKeyDictionary()

    def table(self, store: FeatureStore) -> torch.Tensor:
        if store not in self._tables:
            self._tables[store] = torch.from_numpy(profile_features(store.data)).to(store.device)
        return self._tables[store]

    def rows(self, store: FeatureStore, index: torch.Tensor) -> torch.Tensor:
        """(B, P) for the PEs ``index`` (B,) of ``store``."""
        return self.table(store)[index]
