"""Generative Imputation (section 4.2, Fig. 3c; SPEC 5): generate the missing modality from the present one,
then model both with the two-branch joint network. Three explicit stages.

Stages (a) and (b) — the generators — are one registry component, ``generative_imputation.generators``
(``reported=False``, trained on the training PEs with both modalities), listed in ``depends_on`` so that Tune
and Train fit them once per seed ("generators first") and every joint-model trial reuses them:

(a) sessions -> conversation vector: masked GRU(units) over the session sequence (B, T, V) -> Dropout ->
    Linear(D), regressed on the PE conversation embedding (B, D) with squared error (summed over D, mean over
    PEs).
(b) conversation -> session sequence: h₀ = tanh(W c) (B, H); a GRU decoder emits up to
    ``MAX_GENERATED_SESSIONS`` steps of session tag logits (B, T_gen, V), teacher-forced on the real sequence
    (input at step t = real session t-1, zeros at t = 0), binary cross-entropy summed over tags and averaged over
    the real steps (padded steps are masked out); a length head on h₀ classifies the number of sessions
    (1..T_gen, cross-entropy). Sequences longer than T_gen are truncated to their first T_gen sessions.
    Generation is autoregressive: each step's probabilities are thresholded (``session_threshold``, 0.5) to a
    binary session that feeds the next step; the predicted length keeps the first L steps.

Empty generated sequences (the public reference code crashes on them): a generated step whose thresholded tag
vector is all zero is not a session and is dropped; if no step survives, the PE gets a one-step sequence holding
the *mean session* — the mean tag vector of the unique sessions of the generators' fitting PEs (a soft vector,
the neutral guess). The joint model therefore always sees at least one session step.

(c) joint model (``generative_imputation``, trained on all training PEs): every PE (train and test) missing a
    modality gets the generated one — session-only PEs a generated conversation vector, conversation-only PEs a
    generated session sequence — then ``JointNetwork``: Dense(units) on the conversation ∥ masked GRU(units) on
    the sessions -> Dropout -> Dense(units, ReLU) -> Linear(J), eq. (6).

``T_gen`` is a constant (the dataset's T = 10) rather than the data's padded width, so that padding the event
axis changes neither the generator's shapes nor its output.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models._multistage import cpu_state, nan_scores, require_dependencies, restore, snapshot
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import JointNetwork, MaskedGRU, TanhProjection
from mmrec_ray.models.neural import PREDICT_BATCH_SIZE, fit_network, predict_batches
from mmrec_ray.models.registry import register
from mmrec_ray.training.loop import seed_everything
from mmrec_ray.training.losses import mse_per_row, multilabel_bce

GENERATORS = "generative_imputation.generators"
MAX_GENERATED_SESSIONS = 10  # T_gen: the released dataset's maximum number of events per PE


# ------------------------------------------------------------------------------------------- stage (a)
class SessionsToConversation(nn.Module):
    """forward(session_sequence (B, T, V), session_lengths (B,)) -> generated conversation vector (B, D)."""

    def __init__(self, vocab_size: int, embedding_dim: int, units: int, dropout: float):
        super().__init__()
        self.encoder = MaskedGRU(vocab_size, units)
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(units, embedding_dim)

    def forward(self, session_sequence: torch.Tensor, session_lengths: torch.Tensor) -> torch.Tensor:
        return self.output(self.dropout(self.encoder(session_sequence, session_lengths)))


# ------------------------------------------------------------------------------------------- stage (b)
def _fit_steps(sequence: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T, V) -> (B, steps, V): truncate or zero-pad the step axis."""
    if sequence.shape[1] >= steps:
        return sequence[:, :steps]
    return F.pad(sequence, (0, 0, 0, steps - sequence.shape[1]))


class ConversationToSessions(nn.Module):
    """Conversation vector (B, D) -> session sequence (B, T_gen, V) and its length.

    forward(conversation (B, D), sessions (B, T, V) real sequence for teacher forcing)
        -> (tag logits (B, T_gen, V), length logits (B, T_gen): class k = k + 1 sessions).
    ``generate(conversation, threshold)`` -> (binary sessions (B, T_gen, V) left-aligned, lengths (B,) >= 1,
    empty (B,) bool: nothing survived, so the sequence is the one-step mean-session fallback).
    """

    def __init__(self, embedding_dim: int, vocab_size: int, units: int, dropout: float, max_sessions: int):
        super().__init__()
        self.max_sessions = max_sessions
        self.initial = TanhProjection(embedding_dim, units)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.GRU(vocab_size, units, batch_first=True)
        self.tags = nn.Linear(units, vocab_size)
        self.length = nn.Linear(units, max_sessions)
        # The fallback for a sequence that comes out empty; set from the training sessions, saved with the weights.
        self.register_buffer("mean_session", torch.zeros(vocab_size))

    def forward(
        self, conversation: torch.Tensor, sessions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.dropout(self.initial(conversation))  # (B, H)
        sessions = _fit_steps(sessions, self.max_sessions)
        previous = torch.cat([torch.zeros_like(sessions[:, :1]), sessions[:, :-1]], dim=1)  # teacher forcing
        outputs, _ = self.decoder(previous, state[None].contiguous())
        return self.tags(outputs), self.length(state)

    @torch.no_grad()
    def generate(
        self, conversation: torch.Tensor, threshold: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        state = self.initial(conversation)
        length = self.length(state).argmax(dim=-1) + 1  # (B,)
        hidden = state[None].contiguous()
        step = conversation.new_zeros((conversation.shape[0], 1, self.mean_session.shape[0]))
        steps = []
        for _ in range(self.max_sessions):
            output, hidden = self.decoder(step, hidden)
            step = (torch.sigmoid(self.tags(output)) >= threshold).to(conversation.dtype)  # (B, 1, V)
            steps.append(step)
        generated = torch.cat(steps, dim=1)  # (B, T_gen, V)
        position = torch.arange(self.max_sessions, device=conversation.device)
        keep = (position[None] < length[:, None]) & (generated.sum(dim=-1) > 0)  # drop empty sessions
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept steps to the front, in order
        lengths = keep.sum(dim=1)
        real_step = (position[None] < lengths[:, None]).to(generated.dtype)
        generated = torch.take_along_dim(generated, order[..., None], dim=1) * real_step[..., None]
        empty = lengths == 0
        generated[empty, 0] = self.mean_session.to(generated.dtype)
        lengths = torch.where(empty, torch.ones_like(lengths), lengths)
        return generated, lengths, empty


def session_sequence_loss(
    tag_logits: torch.Tensor, length_logits: torch.Tensor, sessions: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """Stage (b) loss: BCE summed over tags, averaged over each PE's real steps (padding masked), plus the
    length cross-entropy; mean over the batch. tag_logits (B, T_gen, V), length_logits (B, T_gen),
    sessions (B, T, V), lengths (B,) >= 1."""
    if tag_logits.shape[0] == 0:
        return tag_logits.sum() * 0.0
    max_sessions = tag_logits.shape[1]
    targets = _fit_steps(sessions, max_sessions)
    lengths = lengths.clamp(1, max_sessions)
    mask = (torch.arange(max_sessions, device=lengths.device)[None] < lengths[:, None]).to(tag_logits.dtype)
    per_step = F.binary_cross_entropy_with_logits(tag_logits, targets, reduction="none").sum(dim=-1)
    tags = (per_step * mask).sum(dim=1) / mask.sum(dim=1)
    length = F.cross_entropy(length_logits, lengths - 1, reduction="none")
    return (tags + length).mean()


@register
class GenerativeImputationGenerators(Recommender):
    """Stages (a) and (b) of Generative Imputation (see the module docstring).

    ``best_validation_loss`` is the sum of the two generators' best validation losses. ``predict`` gives NaN
    rows: the generators do not recommend. ``session_threshold`` (0.5) binarises generated sessions.
    """

    name = GENERATORS
    reported = False
    trains_on = "both"
    session_threshold = 0.5

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.conversation_generator: SessionsToConversation | None = None
        self.session_generator: ConversationToSessions | None = None

    def build(self, store: FeatureStore) -> None:
        seed_everything(self.seed)
        units, dropout = self.params.units, self.params.dropout
        self.conversation_generator = SessionsToConversation(
            store.vocab_size, store.embedding_dim, units, dropout
        )
        self.session_generator = ConversationToSessions(
            store.embedding_dim, store.vocab_size, units, dropout, MAX_GENERATED_SESSIONS
        )

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        data = store.data
        train_indices = data.train_indices(self.trains_on)
        self.build(store)
        fit_part, _ = data.split_validation(train_indices, self.training.validation_fraction)
        self.session_generator.mean_session.copy_(_mean_session(store, fit_part))

        def conversation_loss(network: nn.Module, batch: Batch) -> torch.Tensor:
            return mse_per_row(network(batch.session_sequence, batch.session_lengths), batch.pe_conversation)

        def session_loss(network: nn.Module, batch: Batch) -> torch.Tensor:
            tag_logits, length_logits = network(batch.pe_conversation, batch.session_sequence)
            return session_sequence_loss(
                tag_logits, length_logits, batch.session_sequence, batch.session_lengths
            )

        result = FitResult(best_validation_loss=0.0)
        for stage, network, loss in (
            ("conversation_generator", self.conversation_generator, conversation_loss),
            ("session_generator", self.session_generator, session_loss),
        ):
            outcome = fit_network(self, network, loss, store, train_indices, stage, callback)
            result.history[stage] = outcome.history
            result.best_validation_loss += outcome.best_validation_loss
            result.extra[f"{stage}_best_epoch"] = outcome.best_epoch
        result.best_epoch = result.extra["session_generator_best_epoch"]
        return result

    @torch.no_grad()
    def generate_conversation(self, store: FeatureStore, indices: np.ndarray) -> torch.Tensor:
        """Stage (a) for PEs ``indices`` (which must have sessions): (n, D)."""
        self.conversation_generator.to(store.device).eval()
        parts = [
            self.conversation_generator(batch.session_sequence, batch.session_lengths)
            for batch in store.iterate(np.asarray(indices), PREDICT_BATCH_SIZE)
        ]
        return torch.cat(parts) if parts else torch.zeros((0, store.embedding_dim), device=store.device)

    @torch.no_grad()
    def generate_sessions(
        self, store: FeatureStore, indices: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Stage (b) for PEs ``indices`` (which must have a conversation):
        ((n, T_gen, V), lengths (n,) >= 1, empty (n,) bool — the mean-session fallback was used)."""
        self.session_generator.to(store.device).eval()
        parts = [
            self.session_generator.generate(batch.pe_conversation, self.session_threshold)
            for batch in store.iterate(np.asarray(indices), PREDICT_BATCH_SIZE)
        ]
        if not parts:
            return (
                torch.zeros((0, MAX_GENERATED_SESSIONS, store.vocab_size), device=store.device),
                torch.zeros(0, dtype=torch.long, device=store.device),
                torch.zeros(0, dtype=torch.bool, device=store.device),
            )
        return tuple(torch.cat(tensors) for tensors in zip(*parts))

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        return nan_scores(store, indices)

    def state_dict(self) -> dict[str, Any]:
        if self.conversation_generator is None or self.session_generator is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {
            "conversation_generator": cpu_state(self.conversation_generator),
            "session_generator": cpu_state(self.session_generator),
            "session_threshold": float(self.session_threshold),
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.build(store)
        self.conversation_generator.load_state_dict(state["conversation_generator"])
        self.session_generator.load_state_dict(state["session_generator"])
        self.session_threshold = float(state["session_threshold"])
        for network in (self.conversation_generator, self.session_generator):
            network.to(store.device).eval()


def _mean_session(store: FeatureStore, indices: np.ndarray) -> torch.Tensor:
    """Mean tag vector (V,) of the unique sessions of PEs ``indices`` (zeros if none)."""
    rows = store.session_rows[torch.as_tensor(np.asarray(indices), dtype=torch.long, device=store.device)]
    rows = torch.unique(rows[rows >= 0])
    if len(rows) == 0:
        return torch.zeros(store.vocab_size)
    return store.session_table[rows].mean(dim=0).cpu()


# ------------------------------------------------------------------------------------------- stage (c)
class ImputedFeatures:
    """Every PE of a store with its missing modality generated (stage c); present modalities are untouched.

    Generated values are kept only for the PEs that need them: ``conversation_slot`` / ``session_slot`` (N,)
    point into the generated tables (-1 = the PE has the modality itself).
    """

    def __init__(self, store: FeatureStore, generators: GenerativeImputationGenerators):
        self.store = store
        data = store.data
        device = store.device
        no_conversation = np.flatnonzero(~np.asarray(data.has_conversation))
        no_session = np.flatnonzero(~np.asarray(data.has_session))
        self.conversation_slot = _slots(data.num_pes, no_conversation, device)
        self.session_slot = _slots(data.num_pes, no_session, device)
        self.generated_conversation = generators.generate_conversation(store, no_conversation)  # (M, D)
        sequences, lengths, empty = generators.generate_sessions(store, no_session)  # (M', T_gen, V), (M',)
        width = int(lengths.max()) if len(lengths) else 1
        self.generated_sessions = sequences[:, :width]
        self.generated_lengths = lengths
        self.num_empty_generated = int(empty.sum())  # sequences that fell back to the mean session

    def conversation(self, batch: Batch) -> torch.Tensor:  # (B, D)
        slot = self.conversation_slot[batch.index]
        if not bool((slot >= 0).any()):
            return batch.pe_conversation
        generated = self.generated_conversation[slot.clamp(min=0)]
        return torch.where((slot >= 0)[:, None], generated, batch.pe_conversation)

    def sessions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:  # (B, T', V), (B,)
        slot = self.session_slot[batch.index]
        if not bool((slot >= 0).any()):
            return batch.session_sequence, batch.session_lengths
        real = batch.session_sequence
        generated = self.generated_sessions[slot.clamp(min=0)]
        steps = max(real.shape[1], generated.shape[1])
        use_generated = slot >= 0
        sequence = torch.where(
            use_generated[:, None, None], _fit_steps(generated, steps), _fit_steps(real, steps)
        )
        lengths = torch.where(use_generated, self.generated_lengths[slot.clamp(min=0)], batch.session_lengths)
        return sequence, lengths


def _slots(num_pes: int, pes: np.ndarray, device: torch.device) -> torch.Tensor:
    slot = torch.full((num_pes,), -1, dtype=torch.long)
    slot[torch.as_tensor(pes, dtype=torch.long)] = torch.arange(len(pes))
    return slot.to(device)


@register
class GenerativeImputationRecommender(Recommender):
    name = "generative_imputation"
    depends_on = (GENERATORS,)
    trains_on = "all"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.generators: GenerativeImputationGenerators | None = None
        self.network: nn.Module | None = None
        self._imputed: ImputedFeatures | None = None

    def imputed(self, store: FeatureStore) -> ImputedFeatures:
        """The store's PEs with generated missing modalities; computed once per store (generators are frozen)."""
        if self._imputed is None or self._imputed.store is not store:
            self._imputed = ImputedFeatures(store, self.generators)
        return self._imputed

    def build_network(self, store: FeatureStore) -> nn.Module:
        return JointNetwork(
            store.embedding_dim, store.vocab_size, self.params.units, store.num_items, self.params.dropout
        )

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        imputed = self.imputed(batch.store)
        sequence, lengths = imputed.sessions(batch)
        return network(imputed.conversation(batch), sequence, lengths)

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return multilabel_bce(self.logits(network, batch), batch.targets)

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        self.generators = require_dependencies(self, dependencies)[GENERATORS]
        self._imputed = None
        imputed = self.imputed(store)
        seed_everything(self.seed)
        self.network = self.build_network(store)
        outcome = fit_network(
            self, self.network, self.loss, store, store.data.train_indices(self.trains_on), "joint", callback
        )
        return FitResult(
            history={"joint": outcome.history},
            best_validation_loss=outcome.best_validation_loss,
            best_epoch=outcome.best_epoch,
            extra={
                "imputed_conversations": int(len(imputed.generated_conversation)),
                "imputed_session_sequences": int(len(imputed.generated_lengths)),
                "empty_generated_sequences": imputed.num_empty_generated,
                "session_threshold": float(self.generators.session_threshold),
            },
        )

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.network is None or self.generators is None:
            raise RuntimeError(f"{self.name}: predict before fit/load_state_dict")
        self.network.to(store.device)
        return predict_batches(self.network, self.logits, store, np.asarray(indices))

    def state_dict(self) -> dict[str, Any]:
        if self.network is None or self.generators is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {"network": cpu_state(self.network), "generators": snapshot(self.generators)}

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.generators = restore(GENERATORS, state["generators"], self.training, store)
        self._imputed = None
        self.network = self.build_network(store)
        self.network.load_state_dict(state["network"])
        self.network.to(store.device)
        self.network.eval()
