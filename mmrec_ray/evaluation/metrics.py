"""Ranking metrics of the paper's protocol (SPEC 6, paper section 5.3): post-filter, HR@k, AP@k / MAP@k.

Shapes: n purchase events (PEs), J items, K cut-offs.

- Post-filter: items the user could not buy at that time rank below every purchasable item, whatever their
  score (the paper "sets the score to the lowest score"). Done by sorting on (purchasable first, score
  descending, item column ascending) instead of rewriting scores, so it also works for logits and for ``-inf``
  scores. It is applied at evaluation only, never in a loss.
- Ties are broken deterministically: the lower item column ranks first.
- HR@k = 1 if any purchased item is among the top k.
- AP@k = sum_{j<=k} P@j * rel_j / min(k, #purchased); MAP@k = mean of AP@k over PEs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_KS: tuple[int, ...] = (1, 2, 3, 4, 5)


def rank_items(scores: np.ndarray, post_filter: np.ndarray | None = None) -> np.ndarray:
    """Item columns ordered best first.

    scores (n, J) float; post_filter (n, J) bool (True = purchasable) or None.
    Returns (n, J) int64: ``order[i, r]`` is the item column at rank r (0-based) for PE i.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be (n, J), got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN: rank only PEs the model serves, with a score for every item")
    n, num_items = scores.shape
    column = np.broadcast_to(np.arange(num_items), (n, num_items))
    if post_filter is None:
        not_purchasable = np.zeros((n, num_items), dtype=bool)
    else:
        post_filter = np.asarray(post_filter, dtype=bool)
        if post_filter.shape != scores.shape:
            raise ValueError(f"post_filter shape {post_filter.shape} != scores shape {scores.shape}")
        not_purchasable = ~post_filter
    # np.lexsort sorts by the last key first: purchasable, then higher score, then lower column.
    return np.lexsort((column, -scores, not_purchasable), axis=-1)


@dataclass
class PerPEMetrics:
    """Per-PE outcomes at each cut-off: hits (n, K) uint8 and ap (n, K) float64, column c is k = ks[c]."""

    ks: tuple[int, ...]
    hits: np.ndarray
    ap: np.ndarray

    def hr(self) -> np.ndarray:
        """HR@k for each k: (K,)."""
        return self.hits.mean(axis=0) if len(self.hits) else np.full(len(self.ks), np.nan)

    def map(self) -> np.ndarray:
        """MAP@k for each k: (K,)."""
        return self.ap.mean(axis=0) if len(self.ap) else np.full(len(self.ks), np.nan)


def per_pe_metrics(
    scores: np.ndarray,
    targets: np.ndarray,
    post_filter: np.ndarray | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> PerPEMetrics:
    """HR@k and AP@k of every PE, vectorized over PEs and cut-offs.

    scores (n, J) float; targets (n, J) multi-hot of purchased items; post_filter (n, J) bool or None.
    A PE without any purchased item (not in valid data) gets hit 0 and AP 0 rather than a division by zero.
    """
    ks = tuple(int(k) for k in ks)
    if not ks or min(ks) < 1:
        raise ValueError(f"cut-offs must be >= 1, got {ks}")
    targets = np.asarray(targets) > 0
    if targets.shape != np.shape(scores):
        raise ValueError(f"targets shape {targets.shape} != scores shape {np.shape(scores)}")
    order = rank_items(scores, post_filter)
    n, num_items = targets.shape
    k_max = max(ks)
    depth = min(k_max, num_items)
    relevant = np.zeros((n, k_max), dtype=np.float64)  # rel_j at ranks 1..k_max (beyond J: nothing)
    relevant[:, :depth] = np.take_along_axis(targets, order[:, :depth], axis=1)
    found = np.cumsum(relevant, axis=1)  # (n, k_max): purchased items within the top j
    precision = found / np.arange(1, k_max + 1)  # P@j
    ap_numerator = np.cumsum(precision * relevant, axis=1)  # sum_{j<=k} P@j rel_j
    n_purchased = targets.sum(axis=1)  # (n,)
    columns = np.asarray(ks) - 1
    hits = (found[:, columns] > 0).astype(np.uint8)
    denominator = np.minimum(np.asarray(ks)[None, :], n_purchased[:, None]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(denominator > 0, ap_numerator[:, columns] / np.maximum(denominator, 1), 0.0)
    return PerPEMetrics(ks=ks, hits=hits, ap=ap)
