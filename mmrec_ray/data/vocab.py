"""The tag/keyword vocabulary (SPEC 4): fitted on training data only, 0.1 % share threshold, one shared ID space.

Action tags and conversation keywords live in the same ID space (that is how the Keyword model maps both
modalities onto one input). An id survives a filter when its *share* is at least ``threshold`` (kept when
``share >= threshold``). Two share rules (``fidelity.vocabulary.share``):

- ``per_row`` (default; the reference code's ``remove_low_frequent_features``): the event rows are first joined
  to the PEs that list them, so an action (or sentence) is one row *per training PE* whose history holds its
  session (conversation). share(id) = occurrences of id over those rows / number of distinct (PE, event, action)
  rows. Each row holds ~2.7 tags on the release, so this rule is about three times looser than the next one.
- ``per_occurrence`` (this project before the fidelity review): every training session (conversation) once,
  share(id) = occurrences of id / all id occurrences.

Which rows a filter sees (tags of the training sessions' actions; keywords of the training conversations'
sentences; or both pooled, for the Keyword model) is the caller's choice (``mmrec_ray.data.vocabulary_fit``). Ids
outside a vocabulary (rare, or never seen in training) are ignored when multi-hots are built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOCAB_THRESHOLD = 0.001  # SPEC 4 / paper section 5.2: drop ids with a frequency under 0.1 percent


@dataclass
class FrequencyFilter:
    """The outcome of the share threshold on one kind of id (tags, keywords, or both pooled)."""

    kept: np.ndarray  # (K,) int64 sorted ids that survive
    dropped: np.ndarray  # (K',) int64 sorted ids seen in training but under the threshold
    dropped_occurrences: int  # occurrences of the dropped ids in the training events (each event once)
    total_occurrences: int  # all occurrences in the training events (each event once)
    rows: int = 0  # the share's denominator (per_row: PE-weighted rows; per_occurrence: total_occurrences)

    def summary(self) -> dict:
        return {
            "distinct_in_training": int(len(self.kept) + len(self.dropped)),
            "kept": int(len(self.kept)),
            "dropped": int(len(self.dropped)),
            "dropped_ids": [int(i) for i in self.dropped[:50]],
            "dropped_occurrences": int(self.dropped_occurrences),
            "total_occurrences": int(self.total_occurrences),
            "share_denominator": int(self.rows),
        }


def fit_frequency_filter(
    occurrences: np.ndarray,
    threshold: float = VOCAB_THRESHOLD,
    *,
    weights: np.ndarray | None = None,
    rows: int | None = None,
) -> FrequencyFilter:
    """Keep the ids whose share is >= ``threshold``.

    occurrences (M,) int: one entry per id occurrence in a training event (an event counted once).
    weights (M,) int: how many times each occurrence counts in the share's numerator (per_row: the training
        PEs' references to its event); default 1; occurrences with weight 0 are not training occurrences.
    rows: the share's denominator (per_row: the PE-weighted number of rows); default the weighted total of
        occurrences (per_occurrence).
    """
    occurrences = np.asarray(occurrences, dtype=np.int64)
    weights = np.ones(len(occurrences), dtype=np.int64) if weights is None else np.asarray(weights, np.int64)
    seen = weights > 0
    ids, inverse = np.unique(occurrences[seen], return_inverse=True)
    counted = np.bincount(inverse, weights=weights[seen], minlength=len(ids))
    plain = np.bincount(inverse, minlength=len(ids))
    denominator = int(counted.sum()) if rows is None else int(rows)
    # The share itself is compared, as the reference does (kept when share >= threshold).
    keep = counted / denominator >= threshold if denominator else np.zeros(len(ids), dtype=bool)
    return FrequencyFilter(
        kept=ids[keep],
        dropped=ids[~keep],
        dropped_occurrences=int(plain[~keep].sum()),
        total_occurrences=int(plain.sum()),
        rows=denominator,
    )


def shared_vocabulary(*filters: FrequencyFilter) -> np.ndarray:
    """(V,) int64: the sorted union of the surviving ids of every kind."""
    kept = [f.kept for f in filters]
    return np.unique(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def multi_hot(
    owner: np.ndarray, ids: np.ndarray, vocabulary: np.ndarray, num_rows: int
) -> tuple[np.ndarray, int]:
    """OR-pool ids into a (num_rows, V) uint8 multi-hot: id ``ids[i]`` sets row ``owner[i]``.

    Returns (matrix, number of id occurrences ignored because they are not in the vocabulary).
    """
    out = np.zeros((num_rows, len(vocabulary)), dtype=np.uint8)
    ids = np.asarray(ids, dtype=np.int64)
    owner = np.asarray(owner, dtype=np.int64)
    if len(vocabulary) == 0 or len(ids) == 0:
        return out, int(len(ids))
    column = np.searchsorted(vocabulary, ids)
    column = np.minimum(column, len(vocabulary) - 1)
    known = vocabulary[column] == ids
    out[owner[known], column[known]] = 1
    return out, int((~known).sum())
