"""Relative Representation (section 4.3.4, eqs. 7–12, Figs. 4c/5c; SPEC 5), in three explicit stages.

Stage 1 — encoders: two single-stage registry components, ``relative_representation.conversation_encoder`` and
``relative_representation.session_encoder`` (``reported=False``; their own files, architecture in
``models._single_event_encoder``). Each is fitted once per seed by the runner and reused by every trial of this
model (anchor counts, batch sizes ...); their tanh layer gives the latent vectors c̃ (eq. 7) and s̃ (eq. 9).

Stage 2 — anchors (``models._anchors``): training PEs with exactly one conversation and one session, sampled
per item class. Switches ``fidelity.relative_representation.anchor_quotas`` (reference: max(1, round(n · item
share)) per item, each candidate in the class of its rarest purchase; equal: n split evenly) and ``anchor_pool``
(training: every training PE, validation part included, as model_relative_representation_step_3.py line 32;
fitting_part: only the PEs the joint network is fitted on). Each anchor contributes its conversation and its
session.

Stage 3 — joint model (step_3.py lines 65-106 and 142-152): each event becomes its cosine similarities to the
anchors' latent vectors of its own modality (eqs. 11–12), (|X|,), plus the is_conversation flag
-> (B, T, |X| + 1) -> masked GRU(units) -> Dropout -> Dense(units, ReLU) -> Linear(J) logits.

Similarities, switch ``fidelity.relative_representation.similarity``:
* ``raw`` (default; the paper and the reference): the cosine similarities as they are.
* ``standardised``: each anchor's similarities minus their mean, over their standard deviation, both over the
  events of the fitting PEs (never validation or test; saved with the model). An affine map per input
  dimension, so the representation stays relative and carries the same information. Added when the encoders
  were tanh -> Linear: their raw similarities were large and alike and the GRU stayed at the item prior.
  Measured on generated data (scale 0.1, D = 64, seeds 0 and 1, mean ± std over (event, anchor) pairs):
  linear encoders, raw: 0.83 ± 0.08 (conversations), 0.85 ± 0.04 (sessions), HR@3 union 0.451 (Popular
  0.486); reference encoders, raw: 0.60 ± 0.15, 0.52 ± 0.11, HR@3 union 0.594, intersection 0.639 (Popular
  0.569) — no collapse; reference encoders, standardised: HR@3 union 0.656, intersection 0.715.
  ``FitResult.extra["similarity"]`` records the raw similarities' mean and spread per modality on every fit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION
from mmrec_ray.models._anchors import Anchors, select_anchors
from mmrec_ray.models._multistage import cpu_state, require_dependencies, restore, snapshot
from mmrec_ray.models._single_event_encoder import SingleEventEncoderComponent, modality_table
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import SequenceClassifier
from mmrec_ray.models.neural import fit_network, predict_batches
from mmrec_ray.models.registry import register
from mmrec_ray.models.relative_representation_conversation_encoder import CONVERSATION_ENCODER
from mmrec_ray.models.relative_representation_session_encoder import SESSION_ENCODER
from mmrec_ray.models.space import grid
from mmrec_ray.training.loop import seed_everything
from mmrec_ray.training.losses import multilabel_bce

ENCODER_OF = {"conversation": CONVERSATION_ENCODER, "session": SESSION_ENCODER}
MODALITIES = (("conversation", EVENT_CONVERSATION), ("session", EVENT_SESSION))


def relative_table(latent: torch.Tensor, anchor_latent: torch.Tensor) -> torch.Tensor:
    """Eqs. (11)–(12): cosine similarity of every latent row (R, H) to every anchor (|X|, H) -> (R, |X|),
    plus one trailing all-zero row (the padding row of the feature tables)."""
    similarity = F.normalize(latent, dim=-1) @ F.normalize(anchor_latent, dim=-1).T
    return torch.cat([similarity, similarity.new_zeros((1, similarity.shape[1]))])


def _gather(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table (R+1, F) with a trailing zero row; rows (B, T) with -1 padding -> (B, T, F)."""
    return table[torch.where(rows < 0, torch.full_like(rows, table.shape[0] - 1), rows)]


def _single_event_row(data, pes: np.ndarray, kind: int) -> np.ndarray:
    """The row (into the modality's table) of the one event of ``kind`` of each PE in ``pes``."""
    kinds = np.asarray(data.event_kind)[pes]
    steps = np.argmax(kinds == kind, axis=1)
    return np.asarray(data.event_row)[pes, steps].astype(np.int64)


class RelativeRepresentationNetwork(SequenceClassifier):
    """forward(events (B, T, |X| + 1): relative representation ∥ is_conversation, lengths (B,)) -> logits (B, J)."""

    def __init__(self, num_anchors: int, units: int, num_items: int, dropout: float):
        super().__init__(num_anchors + 1, units, num_items, dropout)


@register
class RelativeRepresentationRecommender(Recommender):
    name = "relative_representation"
    depends_on = (CONVERSATION_ENCODER, SESSION_ENCODER)
    trains_on = "all"
    # The paper's grid plus the anchor count (around the paper's 125 anchors per item class in total).
    search_space = {**Recommender.search_space, "num_anchors": grid([50, 125, 250])}

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.encoders: dict[str, SingleEventEncoderComponent] = {}  # modality -> fitted encoder component
        self.network: nn.Module | None = None
        self.anchor_latent: dict[str, torch.Tensor] = {}  # modality -> (|X|, H)
        self.anchors: Anchors | None = None
        self.similarity = training.fidelity.relative_representation.similarity  # "raw" | "standardised"
        self.scaling: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # modality -> (mean, std) per anchor
        self._tables: tuple[FeatureStore, torch.Tensor, torch.Tensor] | None = None

    # -- features
    def relative_tables(self, store: FeatureStore) -> tuple[torch.Tensor, torch.Tensor]:
        """(conversation (C+1, |X|), session (S+1, |X|)): the GRU inputs of every event of ``store``; computed
        once per store (the encoders are frozen)."""
        if self._tables is None or self._tables[0] is not store:
            tables = [self.raw_relative_table(store, modality) for modality, _ in MODALITIES]
            if self.similarity == "standardised":
                tables = [self._standardise(m, t) for (m, _), t in zip(MODALITIES, tables, strict=True)]
            self._tables = (store, tables[0], tables[1])
        return self._tables[1], self._tables[2]

    def raw_relative_table(
        self, store: FeatureStore, modality: str, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eqs. (11)/(12) for the rows ``rows`` (default: all) of one modality's table: (R+1, |X|) with a
        trailing zero padding row."""
        table = modality_table(store, modality)
        features = table[:-1] if rows is None else table[rows]
        return relative_table(
            self.encoders[modality].latent(features), self.anchor_latent[modality].to(store.device)
        )

    def _events_of(self, store: FeatureStore, pe_indices: np.ndarray, kind: int) -> torch.Tensor:
        """Distinct table rows of the events of ``kind`` in ``pe_indices`` (each conversation/session once)."""
        data = store.data
        kinds = np.asarray(data.event_kind)[pe_indices]
        rows = np.asarray(data.event_row)[pe_indices]
        return torch.as_tensor(np.unique(rows[kinds == kind]), device=store.device)

    def similarity_statistics(
        self, store: FeatureStore, pe_indices: np.ndarray
    ) -> tuple[dict[str, dict[str, float]], dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        """Raw similarities of the events of ``pe_indices``, per modality: (summary, scaling).

        summary: overall mean and std over (event, anchor) pairs, and the mean over anchors of each anchor's std
        over events (how much one GRU input varies). scaling: per-anchor mean (|X|,) and std (|X|,), what the
        ``standardised`` mode divides by; (0, 1) for a modality with fewer than two events.
        """
        summary: dict[str, dict[str, float]] = {}
        scaling: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for modality, kind in MODALITIES:
            rows = self._events_of(store, pe_indices, kind)
            similarity = self.raw_relative_table(store, modality, rows)[:-1]
            if len(similarity) < 2:  # too few events to estimate a spread: leave that modality unscaled
                mean = similarity.new_zeros(similarity.shape[1])
                std = similarity.new_ones(similarity.shape[1])
            else:
                mean, std = similarity.mean(0), similarity.std(0).clamp_min(1e-6)
                summary[modality] = {
                    "mean": float(similarity.mean()),
                    "std": float(similarity.std()),
                    "per_anchor_std": float(similarity.std(0).mean()),
                }
            scaling[modality] = (mean.detach().cpu(), std.detach().cpu())
        return summary, scaling

    def _standardise(self, modality: str, table: torch.Tensor) -> torch.Tensor:
        mean, std = (value.to(table.device) for value in self.scaling[modality])
        body = (table[:-1] - mean) / std
        return torch.cat([body, table[-1:]])  # the padding row stays zero

    def event_features(self, batch: Batch) -> torch.Tensor:
        """(B, T, |X| + 1): eq. (11) at conversation steps, eq. (12) at session steps, zeros at padding; then
        the is_conversation flag."""
        conversation_table, session_table = self.relative_tables(batch.store)
        rows = batch.store.event_row[batch.index]
        kind = batch.event_kind
        conversation = _gather(conversation_table, torch.where(kind == EVENT_CONVERSATION, rows, -1))
        session = _gather(session_table, torch.where(kind == EVENT_SESSION, rows, -1))
        return torch.cat([conversation + session, batch.is_conversation[..., None]], dim=-1)

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(self.event_features(batch), batch.lengths)

    def build_network(self, store: FeatureStore, num_anchors: int) -> nn.Module:
        return RelativeRepresentationNetwork(
            num_anchors, self.params.units, store.num_items, self.params.dropout
        )

    # -- Recommender
    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        fitted = require_dependencies(self, dependencies)
        self.encoders = {modality: fitted[name] for modality, name in ENCODER_OF.items()}
        switches = self.training.fidelity.relative_representation
        self.similarity = switches.similarity
        data = store.data
        train_indices = data.train_indices(self.trains_on)
        fit_part, _ = data.split_validation(train_indices, self.training.validation_fraction)
        pool = train_indices if switches.anchor_pool == "training" else fit_part
        self.anchors = select_anchors(
            data, pool, self.params.num_anchors, self.seed, quotas=switches.anchor_quotas
        )
        self.anchor_latent = {
            modality: self.encoders[modality].latent(
                modality_table(store, modality)[
                    torch.as_tensor(_single_event_row(data, self.anchors.pes, kind), device=store.device)
                ]
            )
            for modality, kind in MODALITIES
        }
        self._tables = None
        statistics, scaling = self.similarity_statistics(store, fit_part)
        self.scaling = scaling if self.similarity == "standardised" else {}
        seed_everything(self.seed)
        self.network = self.build_network(store, len(self.anchors.pes))
        outcome = fit_network(self, self.network, self.logits_loss, store, train_indices, "joint", callback)
        return FitResult(
            history={"joint": outcome.history},
            best_validation_loss=outcome.best_validation_loss,
            best_epoch=outcome.best_epoch,
            extra={
                "num_anchors_requested": int(self.anchors.requested),
                "num_anchors_used": int(len(self.anchors.pes)),
                "anchor_shortfall": int(self.anchors.shortfall),
                "anchor_quotas": [] if self.anchors.quotas is None else self.anchors.quotas.tolist(),
                "anchor_purchase_event_ids": np.asarray(data.purchase_event_id)[self.anchors.pes].tolist(),
                "anchor_classes": self.anchors.classes.tolist(),
                "similarity": statistics,  # raw cosine similarities over the fitting PEs' events
            },
        )

    def logits_loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return multilabel_bce(
            self.logits(network, batch), batch.targets, reduction=self.training.fidelity.loss_reduction
        )

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.network is None or not self.encoders:
            raise RuntimeError(f"{self.name}: predict before fit/load_state_dict")
        self.network.to(store.device)
        return predict_batches(self.network, self.logits, store, np.asarray(indices))

    def state_dict(self) -> dict[str, Any]:
        if self.network is None or self.anchors is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {
            "network": cpu_state(self.network),
            # The anchors' latent vectors themselves: prediction does not depend on the store's PE numbering.
            "anchor_latent": {key: value.detach().cpu().clone() for key, value in self.anchor_latent.items()},
            # Tensors, not numpy arrays: checkpoints are loaded with torch.load(weights_only=True).
            "anchor_pes": torch.as_tensor(np.asarray(self.anchors.pes, dtype=np.int64).copy()),
            "anchor_classes": torch.as_tensor(np.asarray(self.anchors.classes, dtype=np.int64).copy()),
            "anchors_requested": int(self.anchors.requested),
            # The mode the network was trained with, so a checkpoint predicts the same under other switches.
            "similarity": self.similarity,
            "scaling": {key: (mean.clone(), std.clone()) for key, (mean, std) in self.scaling.items()},
            "encoders": {name: snapshot(self.encoders[modality]) for modality, name in ENCODER_OF.items()},
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.encoders = {
            modality: restore(name, state["encoders"][name], self.training, store)
            for modality, name in ENCODER_OF.items()
        }
        self.anchor_latent = {key: value.to(store.device) for key, value in state["anchor_latent"].items()}
        self.anchors = Anchors(
            pes=torch.as_tensor(state["anchor_pes"]).numpy().astype(np.int64),
            classes=torch.as_tensor(state["anchor_classes"]).numpy().astype(np.int64),
            requested=int(state["anchors_requested"]),
        )
        self.similarity = state["similarity"]
        self.scaling = {key: (mean, std) for key, (mean, std) in state["scaling"].items()}
        self._tables = None
        self.network = self.build_network(store, len(self.anchors.pes))
        self.network.load_state_dict(state["network"])
        self.network.to(store.device)
        self.network.eval()
