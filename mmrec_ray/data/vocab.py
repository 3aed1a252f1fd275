"""The tag/keyword vocabulary (SPEC 4): fitted on training data only, 0.1 % share threshold, one shared ID space.

Action tags and conversation keywords live in the same ID space (that is how the Keyword model maps both
modalities onto one input). Each kind is filtered on its own: a tag survives when its share of all tag
occurrences in the training sessions' actions is at least ``threshold``; a keyword likewise over the training
conversations' sentences. The vocabulary is the sorted union of the survivors; ids outside it (rare, or never
seen in training) are ignored when multi-hots are built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOCAB_THRESHOLD = 0.001  # SPEC 4 / paper section 5.2: drop ids with a frequency under 0.1 percent


@dataclass
class FrequencyFilter:
    """The outcome of the share threshold on one kind of id (tags or keywords)."""

    kept: np.ndarray  # (K,) int64 sorted ids that survive
    dropped: np.ndarray  # (K',) int64 sorted ids seen in training but under the threshold
    dropped_occurrences: int  # training occurrences of the dropped ids
    total_occurrences: int  # all training occurrences

    def summary(self) -> dict:
        return {
            "distinct_in_training": int(len(self.kept) + len(self.dropped)),
            "kept": int(len(self.kept)),
            "dropped": int(len(self.dropped)),
            "dropped_ids": [int(i) for i in self.dropped[:50]],
            "dropped_occurrences": int(self.dropped_occurrences),
            "total_occurrences": int(self.total_occurrences),
        }


def fit_frequency_filter(occurrences: np.ndarray, threshold: float = VOCAB_THRESHOLD) -> FrequencyFilter:
    """Keep the ids whose share of ``occurrences`` (every training occurrence, repeats counted) is >= threshold."""
    occurrences = np.asarray(occurrences, dtype=np.int64)
    ids, counts = np.unique(occurrences, return_counts=True)
    total = int(counts.sum())
    keep = counts >= threshold * total if total else np.zeros(0, dtype=bool)
    return FrequencyFilter(
        kept=ids[keep],
        dropped=ids[~keep],
        dropped_occurrences=int(counts[~keep].sum()),
        total_occurrences=total,
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
