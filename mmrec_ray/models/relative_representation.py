"""Relative Representation (section 4.3.4, eqs. 7–12, Figs. 4c/5c; SPEC 5), in three explicit stages.

Stage 1 — encoders (registry component ``relative_representation.encoders``, ``reported=False``; fitted once
per seed by the runner and reused by every anchor-count trial): two single-event networks trained separately on
the recommendation task,

    conversation c (D,) -> c̃ = tanh(W_c c) (eq. 7) -> o = W_o c̃ (eq. 8)
    session s (V,)      -> s̃ = tanh(W_s s) (eq. 9) -> o = W_o s̃ (eq. 10)

trained with eq. (6) on single events: every conversation event of a training PE is one example whose target
is that PE's purchase (likewise every session event). The latent width is ``params.units`` of the component.

Stage 2 — anchors (``select_anchors``): ``params.num_anchors`` training PEs with exactly one conversation and
one session, sampled per item class; each contributes its conversation and its session.

Stage 3 — joint model: each event becomes its cosine similarities to the anchors' latent vectors of its own
modality (eqs. 11–12), (|X|,), plus the is_conversation flag -> (B, T, |X| + 1) -> masked GRU(units) ->
Dropout -> Dense(units, ReLU) -> Linear(J).

Feature scaling (documented deviation): the raw cosine similarities of tanh latents are all large and alike
(measured on generated data at scale 0.2: 0.84 ± 0.06 per anchor), and with them the joint GRU never left the
item prior (validation loss flat at the Popular level, HR@3 equal to Popular's). Each anchor dimension is
therefore standardised with the mean and standard deviation of that modality's similarities over the events of
the fitting PEs (never validation or test); the statistics are part of the saved state. This is an affine map
per input dimension, so the representation is still relative (eqs. 11-12) and carries the same information.

Anchor quota (documented choice): equal per item class. The |X| anchors are split as evenly as possible over
the item classes that have candidates (⌊|X|/K⌋ each, the remainder of one extra each going to classes drawn
at random with the run's seed); a PE that bought several items is a candidate of each of them but is drawn at
most once. Classes are filled rarest first; a class with fewer candidates than its quota takes them all and
the shortfall is drawn from the classes that still have candidates, one at a time in a seeded order, so the
total is always exactly |X| (the public reference code ends with 124 when asked for 125). If there are fewer
candidate PEs than |X| in total, all candidates are used and a warning says so (``extra["num_anchors_used"]``).
Anchors are drawn from the fitting part of the training PEs (never validation or test), with
``numpy.random.default_rng(seed)``: deterministic per seed and different across seeds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION
from mmrec_ray.models._multistage import (
    EventExamples,
    cpu_state,
    modality_events,
    nan_scores,
    require_dependencies,
    restore,
    snapshot,
)
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import SequenceClassifier, TanhProjection
from mmrec_ray.models.neural import fit_network, predict_batches
from mmrec_ray.models.registry import register
from mmrec_ray.training.loop import seed_everything, train
from mmrec_ray.training.losses import multilabel_bce

ENCODERS = "relative_representation.encoders"
_CHUNK = 65536  # rows encoded at once when building the relative tables (bounds memory)


# ------------------------------------------------------------------------------------------------ stage 1
class SingleEventEncoder(nn.Module):
    """x (B, F) -> latent tanh(W x) (B, H) (eq. 7 / 9) -> logits W_o latent (B, J) (eq. 8 / 10)."""

    def __init__(self, in_features: int, units: int, num_items: int):
        super().__init__()
        self.project = TanhProjection(in_features, units)
        self.output = nn.Linear(units, num_items)

    def latent(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.project(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.output(self.latent(inputs))


def _event_loss(network: nn.Module, batch) -> torch.Tensor:
    return multilabel_bce(network(batch.features), batch.targets)


@register
class RelativeRepresentationEncoders(Recommender):
    """Stage 1 of Relative Representation: the conversation and the session encoder (eqs. 7–10).

    ``best_validation_loss`` is the sum of the two encoders' best validation losses (both per-example eq. 6).
    ``predict`` gives NaN rows: the encoders score single events, not PEs.
    """

    name = ENCODERS
    reported = False
    trains_on = "all"
    tunable = ("batch_size", "units")  # no dropout in eqs. 7–10

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.conversation_encoder: SingleEventEncoder | None = None
        self.session_encoder: SingleEventEncoder | None = None

    def build(self, store: FeatureStore) -> None:
        seed_everything(self.seed)
        self.conversation_encoder = SingleEventEncoder(
            store.embedding_dim, self.params.units, store.num_items
        )
        self.session_encoder = SingleEventEncoder(store.vocab_size, self.params.units, store.num_items)

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        data = store.data
        self.build(store)
        result = FitResult(best_validation_loss=0.0)
        stages = (
            (
                "conversation_encoder",
                self.conversation_encoder,
                "conversation",
                EVENT_CONVERSATION,
                store.conversation_table,
            ),
            ("session_encoder", self.session_encoder, "session", EVENT_SESSION, store.session_table),
        )
        for stage, encoder, modality, kind, table in stages:
            fit_pes, validation_pes = data.split_validation(
                data.train_indices(modality), self.training.validation_fraction
            )
            fit_rows, fit_owner = modality_events(data, fit_pes, kind)
            validation_rows, validation_owner = modality_events(data, validation_pes, kind)
            examples = EventExamples(
                store,
                table,
                np.concatenate([fit_rows, validation_rows]),
                np.concatenate([fit_owner, validation_owner]),
            )
            outcome = train(
                encoder,
                _event_loss,
                examples,
                np.arange(len(fit_rows)),
                np.arange(len(fit_rows), len(examples)),
                self.params.batch_size,
                self.training,
                self.seed,
                stage=stage,
                callback=callback,
            )
            result.history[stage] = outcome.history
            result.best_validation_loss += outcome.best_validation_loss
            result.extra[f"{stage}_best_epoch"] = outcome.best_epoch
            result.extra[f"{stage}_examples"] = int(len(examples))
        result.best_epoch = result.extra["session_encoder_best_epoch"]
        return result

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        return nan_scores(store, indices)

    def state_dict(self) -> dict[str, Any]:
        if self.conversation_encoder is None or self.session_encoder is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {
            "conversation": cpu_state(self.conversation_encoder),
            "session": cpu_state(self.session_encoder),
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.build(store)
        self.conversation_encoder.load_state_dict(state["conversation"])
        self.session_encoder.load_state_dict(state["session"])
        for encoder in (self.conversation_encoder, self.session_encoder):
            encoder.to(store.device)
            encoder.eval()

    @torch.no_grad()
    def latent(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        """Latent vectors (R, H) of single events (R, F) of ``modality`` ("conversation" | "session")."""
        encoder = self.conversation_encoder if modality == "conversation" else self.session_encoder
        if encoder is None:
            raise RuntimeError(f"{self.name}: latent before fit/load_state_dict")
        encoder.to(inputs.device)
        encoder.eval()
        return (
            torch.cat([encoder.latent(chunk) for chunk in inputs.split(_CHUNK)])
            if len(inputs)
            else (inputs.new_zeros((0, self.params.units)))
        )


# ------------------------------------------------------------------------------------------------ stage 2
@dataclass
class Anchors:
    """The selected anchor PEs (row indices into the prepared arrays), each with the class it was drawn for."""

    pes: np.ndarray  # (|X|,) int64
    classes: np.ndarray  # (|X|,) int64: item column j the anchor was drawn for
    requested: int


def anchor_candidates(data, pe_indices: np.ndarray) -> np.ndarray:
    """PEs among ``pe_indices`` with exactly one conversation and exactly one session."""
    pe_indices = np.asarray(pe_indices)
    kinds = np.asarray(data.event_kind)[pe_indices]
    conversations = (kinds == EVENT_CONVERSATION).sum(axis=1)
    sessions = (kinds == EVENT_SESSION).sum(axis=1)
    return pe_indices[(conversations == 1) & (sessions == 1)]


def select_anchors(data, pe_indices: np.ndarray, num_anchors: int, seed: int) -> Anchors:
    """Stage 2: ``num_anchors`` anchor PEs sampled per item class (see the module docstring for the quota)."""
    if num_anchors < 1:
        raise ValueError(f"relative_representation: num_anchors must be >= 1, got {num_anchors}")
    rng = np.random.default_rng(seed)
    candidates = np.sort(anchor_candidates(data, pe_indices))
    if len(candidates) == 0:
        raise ValueError(
            "relative_representation: no training PE has exactly one conversation and one session to anchor on"
        )
    wanted = num_anchors
    if len(candidates) < num_anchors:
        warnings.warn(
            f"relative_representation: {num_anchors} anchors asked for but only {len(candidates)} training PEs "
            "have exactly one conversation and one session; using all of them",
            stacklevel=2,
        )
        wanted = len(candidates)
    targets = np.asarray(data.targets)[candidates] > 0  # (K_candidates, J)
    classes = np.flatnonzero(targets.any(axis=0))
    quota = dict.fromkeys(classes.tolist(), wanted // len(classes)) if len(classes) else {}
    for j in rng.permutation(classes)[: wanted % len(classes) if len(classes) else 0]:
        quota[int(j)] += 1

    taken = np.zeros(len(candidates), dtype=bool)
    chosen_pes: list[int] = []
    chosen_classes: list[int] = []

    def draw(j: int, count: int) -> int:
        pool = np.flatnonzero(targets[:, j] & ~taken)
        count = min(count, len(pool))
        if count:
            picked = rng.choice(pool, size=count, replace=False)
            taken[picked] = True
            chosen_pes.extend(candidates[picked].tolist())
            chosen_classes.extend([j] * count)
        return count

    # Rarest classes first, so that common classes do not use up the PEs a rare class needs.
    sizes = targets.sum(axis=0)
    for j in sorted(quota, key=lambda c: (sizes[c], c)):
        draw(j, quota[j])
    # Shortfall (classes with fewer candidates than their quota): one more at a time from classes with spares.
    while len(chosen_pes) < wanted:
        progressed = False
        for j in rng.permutation(classes):
            if len(chosen_pes) >= wanted:
                break
            progressed |= draw(int(j), 1) > 0
        if not progressed:  # candidates that bought nothing (no class) fill the rest
            rest = np.flatnonzero(~taken)
            picked = rng.choice(rest, size=wanted - len(chosen_pes), replace=False)
            taken[picked] = True
            chosen_pes.extend(candidates[picked].tolist())
            chosen_classes.extend([-1] * len(picked))
    return Anchors(
        pes=np.asarray(chosen_pes, dtype=np.int64),
        classes=np.asarray(chosen_classes, dtype=np.int64),
        requested=num_anchors,
    )


def _single_event_row(data, pes: np.ndarray, kind: int) -> np.ndarray:
    kinds = np.asarray(data.event_kind)[pes]
    steps = np.argmax(kinds == kind, axis=1)
    return np.asarray(data.event_row)[pes, steps].astype(np.int64)


# ------------------------------------------------------------------------------------------------ stage 3
def relative_table(latent: torch.Tensor, anchor_latent: torch.Tensor) -> torch.Tensor:
    """Eqs. (11)–(12): cosine similarity of every latent row (R, H) to every anchor (|X|, H) -> (R, |X|),
    plus one trailing all-zero row (the padding row of the feature tables)."""
    similarity = F.normalize(latent, dim=-1) @ F.normalize(anchor_latent, dim=-1).T
    return torch.cat([similarity, similarity.new_zeros((1, similarity.shape[1]))])


def _gather(table: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """table (R+1, F) with a trailing zero row; rows (B, T) with -1 padding -> (B, T, F)."""
    return table[torch.where(rows < 0, torch.full_like(rows, table.shape[0] - 1), rows)]


class RelativeRepresentationNetwork(SequenceClassifier):
    """forward(events (B, T, |X| + 1): relative representation ∥ is_conversation, lengths (B,)) -> logits (B, J)."""

    def __init__(self, num_anchors: int, units: int, num_items: int, dropout: float):
        super().__init__(num_anchors + 1, units, num_items, dropout)


@register
class RelativeRepresentationRecommender(Recommender):
    name = "relative_representation"
    depends_on = (ENCODERS,)
    trains_on = "all"
    tunable = ("batch_size", "units", "dropout", "num_anchors")

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.encoders: RelativeRepresentationEncoders | None = None
        self.network: nn.Module | None = None
        self.anchor_latent: dict[str, torch.Tensor] = {}  # modality -> (|X|, H)
        self.anchors: Anchors | None = None
        self._tables: tuple[FeatureStore, torch.Tensor, torch.Tensor] | None = None
        self.scaling: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # modality -> (mean, std) per anchor

    # -- features
    def relative_tables(self, store: FeatureStore) -> tuple[torch.Tensor, torch.Tensor]:
        """(conversation (C+1, |X|), session (S+1, |X|)) relative representations of every event of ``store``;
        computed once per store (the encoders are frozen)."""
        if self._tables is None or self._tables[0] is not store:
            conversation = self._standardise("conversation", self.raw_relative_table(store, "conversation"))
            session = self._standardise("session", self.raw_relative_table(store, "session"))
            self._tables = (store, conversation, session)
        return self._tables[1], self._tables[2]

    def raw_relative_table(
        self, store: FeatureStore, modality: str, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Eqs. (11)/(12) for the rows ``rows`` (default: all) of one modality's table: (R+1, |X|) with a
        trailing zero padding row."""
        table = store.conversation_table if modality == "conversation" else store.session_table
        features = table[:-1] if rows is None else table[rows]
        return relative_table(
            self.encoders.latent(modality, features), self.anchor_latent[modality].to(store.device)
        )

    def fit_scaling(self, store: FeatureStore, pe_indices: np.ndarray) -> None:
        """Per-anchor mean and std of each modality's similarities over the events of ``pe_indices``."""
        data = store.data
        kinds = np.asarray(data.event_kind)[pe_indices]
        rows = np.asarray(data.event_row)[pe_indices]
        self.scaling = {}
        for modality, kind in (("conversation", EVENT_CONVERSATION), ("session", EVENT_SESSION)):
            used = torch.as_tensor(np.unique(rows[kinds == kind]), device=store.device)
            similarity = self.raw_relative_table(store, modality, used)[:-1]
            if len(used) < 2:  # too few events to estimate a spread: leave that modality unscaled
                mean = similarity.new_zeros(similarity.shape[1])
                std = similarity.new_ones(similarity.shape[1])
            else:
                mean, std = similarity.mean(0), similarity.std(0).clamp_min(1e-6)
            self.scaling[modality] = (mean.detach().cpu(), std.detach().cpu())

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
        self.encoders = require_dependencies(self, dependencies)[ENCODERS]
        data = store.data
        train_indices = data.train_indices(self.trains_on)
        fit_part, _ = data.split_validation(train_indices, self.training.validation_fraction)
        self.anchors = select_anchors(data, fit_part, self.params.num_anchors, self.seed)
        conversation_rows = torch.as_tensor(_single_event_row(data, self.anchors.pes, EVENT_CONVERSATION))
        session_rows = torch.as_tensor(_single_event_row(data, self.anchors.pes, EVENT_SESSION))
        self.anchor_latent = {
            "conversation": self.encoders.latent(
                "conversation", store.conversation_table[conversation_rows.to(store.device)]
            ),
            "session": self.encoders.latent("session", store.session_table[session_rows.to(store.device)]),
        }
        self._tables = None
        self.fit_scaling(store, fit_part)
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
                "anchor_purchase_event_ids": np.asarray(data.purchase_event_id)[self.anchors.pes].tolist(),
                "anchor_classes": self.anchors.classes.tolist(),
            },
        )

    def logits_loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return multilabel_bce(self.logits(network, batch), batch.targets)

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.network is None or self.encoders is None:
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
            "anchor_pes": self.anchors.pes.copy(),
            "anchor_classes": self.anchors.classes.copy(),
            "anchors_requested": int(self.anchors.requested),
            "scaling": {key: (mean.clone(), std.clone()) for key, (mean, std) in self.scaling.items()},
            "encoders": snapshot(self.encoders),
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.encoders = restore(ENCODERS, state["encoders"], self.training, store)
        self.anchor_latent = {key: value.to(store.device) for key, value in state["anchor_latent"].items()}
        self.anchors = Anchors(
            pes=np.asarray(state["anchor_pes"]),
            classes=np.asarray(state["anchor_classes"]),
            requested=int(state["anchors_requested"]),
        )
        self.scaling = {key: (mean, std) for key, (mean, std) in state["scaling"].items()}
        self._tables = None
        self.network = self.build_network(store, len(self.anchors.pes))
        self.network.load_state_dict(state["network"])
        self.network.to(store.device)
        self.network.eval()
