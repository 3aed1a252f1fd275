"""Keyword (section 4.3.2): conversations become multi-hot keyword vectors in the web sessions' tag space, so
every event is a binarised vector; the events, in order, go through one GRU.

Per event (B, T, 1 + V_k): [is_conversation, keywords (conversation) or max-pooled tags (session, eq. 2)], over
the Keyword model's own vocabulary (V_k columns of the shared V; ``fidelity.keyword.frequency_filter``, fitted at
prepare time: ``pooled`` — the reference's model_keyword.py — one 0.1 % filter over the training PEs' sentence
keywords and action tags together; ``separate`` — the union of the tag and the keyword filters).

Events without any id of that vocabulary (``fidelity.keyword.empty_events``):

- ``drop`` (default; model_keyword.py / evaluation_keyword.py): they are not events. A training PE left without
  events leaves Keyword's training subset (the reference drops rows without keywords before it builds its
  sequences); a test PE is still scored, from the events it has left — with none, from the GRU's zero state (the
  reference feeds such a PE one step holding only an empty-string pseudo-feature; the zero state is our
  documented equivalent).
- ``keep`` (this project before the fidelity review): every event is a step, an empty one an all-zero vector.

Row features (``fidelity.keyword.row_features``, fixed at prepare time): ``own`` (default) — an event is the OR of
its own sentences' keywords (actions' tags); ``reference`` — model_keyword.py's defect for training PEs: each
sentence/action row also carries the ids of the other modality's row at the same index label (a duplicated index
after ``pd.concat``), in the filter's shares and in the pooled vectors (mmrec_ray/data/vocabulary_fit.py
``RowMixing``); test PEs stay clean, as in evaluation_keyword.py. The events kept under ``drop`` are those whose
mixed vector holds an id.

Network (SPEC 5, Table 2: batch 512, units 256, dropout 0.2):
    masked GRU(units) (eq. 3) -> Dropout -> Dense(units, ReLU) -> Linear(J) logits.
"""

from __future__ import annotations

import torch
from torch import nn

from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.errors import ConfigError
from mmrec_ray.models.layers import SequenceClassifier
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register


class KeywordNetwork(nn.Module):
    """forward(events (B, T, 1 + V_k): [is_conversation, keyword multi-hot], lengths (B,)) -> logits (B, J)."""

    def __init__(self, vocab_size: int, units: int, num_items: int, dropout: float):
        super().__init__()
        self.classifier = SequenceClassifier(vocab_size + 1, units, num_items, dropout)

    def forward(self, events: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classifier(events, lengths)


@register
class KeywordRecommender(NetworkRecommender):
    name = "keyword"
    trains_on = "all"  # the PE types it serves; with empty_events=drop it trains on "keyword" (see __init__)

    def __init__(self, params: ModelParams, training: TrainingConfig, seed: int):
        super().__init__(params, training, seed)
        self.drop_empty = training.fidelity.keyword.empty_events == "drop"
        if self.drop_empty:
            # Training PEs whose every event lacks a Keyword id leave the training subset (PreparedData).
            self.trains_on = "keyword"

    def build_network(self, store: FeatureStore) -> nn.Module:
        self._check_prepared(store)
        return KeywordNetwork(
            store.keyword_vocab_size, self.params.units, store.num_items, self.params.dropout
        )

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        if self.drop_empty:
            return network(batch.keyword_sequence, batch.keyword_lengths)
        return network(batch.keyword_sequence_all, batch.lengths)

    def _check_prepared(self, store: FeatureStore) -> None:
        """The vocabulary and the event vectors are built at prepare time: refuse tensors prepared with another
        frequency filter or other row features."""
        keyword = self.training.fidelity.keyword
        prepared = store.data.meta.get("fidelity", {}).get("keyword")
        if prepared is None:  # tensors built in memory (tests), not by `mmrec prepare`
            return
        # Folders prepared before row_features existed were built with clean rows.
        for key, wanted, there in (
            ("frequency_filter", keyword.frequency_filter, prepared.get("frequency_filter")),
            ("row_features", keyword.row_features, prepared.get("row_features", "own")),
        ):
            if there is not None and there != wanted:
                raise ConfigError(
                    f"keyword: fidelity.keyword.{key} is {wanted!r} but the tensors were prepared with "
                    f"{there!r}; prepare again (mmrec prepare --force --set fidelity.keyword.{key}={wanted})"
                )
