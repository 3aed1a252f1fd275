"""Generative Imputation, stage (b): the conversation-vector -> session-sequence generator (section 4.2, Fig. 3c).

A stage component (``reported = False``) that ``generative_imputation`` lists in ``depends_on`` (fitted once per
seed, reused by every joint-model trial). Its own hyperparameters (``generative_imputation.session_generator``:
batch 128, units 256, dropout 0.3, the values hard-coded in the reference's ``model_generative_imputation_step_2.py``
line 75). Training data (step_2 lines 26-60): the training PEs with both modalities; input the PE's mean
conversation embedding (B, D), target its session sequence; the last validation_fraction (10 %) by PE id validates.

Network, ``fidelity.generative_imputation.session_generator``:

- ``reference`` (step_2 lines 74-84): Dense(units, linear) on the conversation -> repeated ``T_gen`` times ->
  Dropout (independently per step, as Keras's Dropout on the repeated tensor) -> GRU(units) returning every step
  -> per-step Linear(V) tag logits (B, T_gen, V). The target is the session sequence padded on the LEFT to
  ``T_gen`` steps (``pf.padding``: the real sessions end at the last step); the loss is BCE averaged over tags
  (``fidelity.loss_reduction``: ``sum`` sums them) and over all T_gen steps, the padded ones included, then over
  PEs — what Keras's ``binary_crossentropy`` gives on that target.

  ``T_gen`` = the longest session sequence among the generator's training PEs (fitting and validation part: the
  reference pads before it splits off validation, step_2 lines 56-60). It is computed from the PEs' session
  *counts*, not from the width of the padded event axis, so padding the data changes neither the network's
  target nor its output (padding invariance of the whole pipeline); it is saved with the weights. A sequence
  longer than ``T_gen`` (none among the training PEs) keeps its last ``T_gen`` sessions, as left truncation would.

- ``decoder`` (this project before the fidelity review): h₀ = tanh(W c) (B, H); a GRU decoder emits
  ``MAX_GENERATED_SESSIONS`` steps of tag logits, teacher-forced on the real sequence (input at step t = real
  session t-1, zeros at t = 0), plus a length head on h₀ that classifies the number of sessions (1..T_gen).
  Loss: BCE *summed* over tags and averaged over the real steps (padding masked), plus the length cross-entropy,
  mean over PEs — kept exactly as it was, the sum balancing the tag term against the length term (it is this
  project's design, not a Keras loss, so ``fidelity.loss_reduction`` does not apply). Generation is
  autoregressive: each step's thresholded session feeds the next step; the predicted length keeps the first L.
  Its ``T_gen`` is the constant ``MAX_GENERATED_SESSIONS`` (the dataset's T = 10), padding-invariant as well.

Generation, both designs (step_3 lines 73-91): tag probabilities are thresholded at ``session_threshold`` (0.5);
a step with no tag is not a session and is dropped; the surviving steps keep their order and are left-aligned
(the layout every model here reads, with a length). **Defect fixed:** when no step survives, the reference
crashes (the PE then has no generated session rows, so its padded session array holds fewer PEs than the
conversation and purchase arrays, and the split at step_3 line 115 rejects the inconsistent lengths); here the
PE gets a one-step sequence holding the *mean session* — the mean tag vector of the unique sessions of the
generator's fitting PEs (a soft vector, the neutral guess) — and is counted as empty.

Shapes: B PEs in a batch, T steps of the data, T_gen generated steps, V session vocabulary, H = units, D
sentence-embedding width.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.errors import ConfigError
from mmrec_ray.models._multistage import cpu_state, nan_scores
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import TanhProjection, left_align_steps
from mmrec_ray.models.neural import PREDICT_BATCH_SIZE, fit_network, fit_result
from mmrec_ray.models.registry import register
from mmrec_ray.training.loop import seed_everything
from mmrec_ray.training.losses import Reduction, multilabel_bce

SESSION_GENERATOR = "generative_imputation.session_generator"
MAX_GENERATED_SESSIONS = 10  # the decoder's T_gen: the released dataset's maximum number of events per PE
SessionDesign = Literal["reference", "decoder"]


# ------------------------------------------------------------------------------------------- step layouts
def pad_steps(sequence: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, T, V) left-aligned -> (B, steps, V): keep the first ``steps`` or zero-pad at the end."""
    if sequence.shape[1] >= steps:
        return sequence[:, :steps]
    return F.pad(sequence, (0, 0, 0, steps - sequence.shape[1]))


def right_align(sequence: torch.Tensor, lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """Left-aligned (B, T, V) with ``lengths`` (B,) real steps -> (B, steps, V) with the real steps at the end
    (zeros before them): the reference's left padding. Only the real steps are read, so T does not matter;
    a sequence longer than ``steps`` keeps its last ``steps`` steps."""
    position = torch.arange(steps, device=sequence.device)
    source = position[None] - steps + lengths[:, None]  # (B, steps): which real step lands here
    real = source >= 0
    if sequence.shape[1] == 0:
        return sequence.new_zeros((sequence.shape[0], steps, sequence.shape[2]))
    gathered = torch.take_along_dim(sequence, source.clamp(min=0)[..., None], dim=1)
    return gathered * real[..., None].to(sequence.dtype)


def compact_sessions(
    steps: torch.Tensor, keep: torch.Tensor, mean_session: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Generated steps -> the left-aligned sequence the joint model reads.

    steps (B, T_gen, V) binary sessions; keep (B, T_gen) bool, the steps that are sessions. The kept steps move
    to the front in their order, the rest is zeroed. Returns (sequences (B, T_gen, V), lengths (B,) >= 1,
    empty (B,) bool); an empty PE gets one step holding ``mean_session`` (V,) (see the module docstring).
    """
    sequences, lengths = left_align_steps(steps, keep)
    empty = lengths == 0
    sequences[empty, 0] = mean_session.to(device=steps.device, dtype=steps.dtype)
    lengths = torch.where(empty, torch.ones_like(lengths), lengths)
    return sequences, lengths, empty


# ------------------------------------------------------------------------------------------- reference design
class RepeatedConversationGRU(nn.Module):
    """The reference's generator: forward(conversation (B, D)) -> tag logits (B, T_gen, V), see the module
    docstring. ``generate`` -> (binary steps (B, T_gen, V), keep (B, T_gen) bool: the step has a tag)."""

    def __init__(self, embedding_dim: int, vocab_size: int, units: int, dropout: float, num_steps: int):
        super().__init__()
        self.num_steps = num_steps
        self.projection = nn.Linear(embedding_dim, units)
        self.dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(units, units, batch_first=True)
        self.tags = nn.Linear(units, vocab_size)

    def forward(self, conversation: torch.Tensor) -> torch.Tensor:
        repeated = self.projection(conversation)[:, None].expand(-1, self.num_steps, -1)  # (B, T_gen, H)
        outputs, _ = self.gru(self.dropout(repeated))
        return self.tags(outputs)

    def loss(
        self,
        conversation: torch.Tensor,
        sessions: torch.Tensor,
        lengths: torch.Tensor,
        reduction: Reduction,
    ) -> torch.Tensor:
        """BCE against the left-padded target, over tags (``reduction``) then the mean over steps and PEs."""
        logits = self(conversation)  # (B, T_gen, V)
        target = right_align(sessions, lengths, self.num_steps)
        # Every PE has T_gen steps, so the mean over B·T_gen rows is the mean over PEs of the mean over steps.
        return multilabel_bce(logits.flatten(0, 1), target.flatten(0, 1), reduction=reduction)

    @torch.no_grad()
    def generate(self, conversation: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        steps = (torch.sigmoid(self(conversation)) >= threshold).to(conversation.dtype)
        return steps, steps.sum(dim=-1) > 0


# ------------------------------------------------------------------------------------------- decoder design
class TeacherForcedDecoder(nn.Module):
    """This project's earlier generator (see the module docstring).

    forward(conversation (B, D), sessions (B, T, V) real left-aligned sequence for teacher forcing)
        -> (tag logits (B, T_gen, V), length logits (B, T_gen): class k = k + 1 sessions).
    ``generate`` -> (binary steps (B, T_gen, V), keep (B, T_gen) bool: within the predicted length and non-empty).
    """

    def __init__(self, embedding_dim: int, vocab_size: int, units: int, dropout: float, num_steps: int):
        super().__init__()
        self.num_steps = num_steps
        self.initial = TanhProjection(embedding_dim, units)
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.GRU(vocab_size, units, batch_first=True)
        self.tags = nn.Linear(units, vocab_size)
        self.length = nn.Linear(units, num_steps)

    def forward(
        self, conversation: torch.Tensor, sessions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.dropout(self.initial(conversation))  # (B, H)
        sessions = pad_steps(sessions, self.num_steps)
        previous = torch.cat([torch.zeros_like(sessions[:, :1]), sessions[:, :-1]], dim=1)  # teacher forcing
        outputs, _ = self.decoder(previous, state[None].contiguous())
        return self.tags(outputs), self.length(state)

    def loss(
        self,
        conversation: torch.Tensor,
        sessions: torch.Tensor,
        lengths: torch.Tensor,
        reduction: Reduction,  # unused: this design's loss is its own (see the module docstring)
    ) -> torch.Tensor:
        """Tags: BCE summed over tags, averaged over each PE's real steps; plus the length cross-entropy; mean
        over PEs. Sequences longer than T_gen count their first T_gen sessions."""
        if conversation.shape[0] == 0:
            return conversation.sum() * 0.0
        tag_logits, length_logits = self(conversation, sessions)
        targets = pad_steps(sessions, self.num_steps)
        lengths = lengths.clamp(1, self.num_steps)
        position = torch.arange(self.num_steps, device=lengths.device)
        mask = (position[None] < lengths[:, None]).to(tag_logits.dtype)
        per_step = F.binary_cross_entropy_with_logits(tag_logits, targets, reduction="none").sum(dim=-1)
        tags = (per_step * mask).sum(dim=1) / mask.sum(dim=1)
        length = F.cross_entropy(length_logits, lengths - 1, reduction="none")
        return (tags + length).mean()

    @torch.no_grad()
    def generate(self, conversation: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.initial(conversation)
        length = self.length(state).argmax(dim=-1) + 1  # (B,)
        hidden = state[None].contiguous()
        step = conversation.new_zeros((conversation.shape[0], 1, self.tags.out_features))
        steps = []
        for _ in range(self.num_steps):
            output, hidden = self.decoder(step, hidden)
            step = (torch.sigmoid(self.tags(output)) >= threshold).to(conversation.dtype)  # (B, 1, V)
            steps.append(step)
        generated = torch.cat(steps, dim=1)  # (B, T_gen, V)
        position = torch.arange(self.num_steps, device=conversation.device)
        return generated, (position[None] < length[:, None]) & (generated.sum(dim=-1) > 0)


NETWORKS: dict[str, type[nn.Module]] = {"reference": RepeatedConversationGRU, "decoder": TeacherForcedDecoder}


# ------------------------------------------------------------------------------------------- the component
@register
class SessionGenerator(Recommender):
    """Stage (b) of Generative Imputation (see the module docstring). ``predict`` gives NaN rows: a generator
    does not recommend; ``generate`` is what the joint model calls. ``session_threshold`` (0.5, step_3 line 80)
    binarises generated sessions."""

    name = SESSION_GENERATOR
    reported = False
    trains_on = "both"
    session_threshold = 0.5

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.design: SessionDesign = training.fidelity.generative_imputation.session_generator
        if self.design not in NETWORKS:
            raise ValueError(
                f"unknown session-generator design {self.design!r}; expected one of {list(NETWORKS)}"
            )
        self.network: nn.Module | None = None
        self.num_steps = 0  # T_gen, set by fit or load_state_dict
        self.mean_session: torch.Tensor | None = None  # (V,) the fallback for an empty generated sequence

    def build(self, store: FeatureStore) -> nn.Module:
        return NETWORKS[self.design](
            store.embedding_dim, store.vocab_size, self.params.units, self.params.dropout, self.num_steps
        )

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return network.loss(
            batch.pe_conversation,
            batch.session_sequence,
            batch.session_lengths,
            self.training.fidelity.loss_reduction,
        )

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        data = store.data
        train_indices = data.train_indices(self.trains_on)
        fit_part, _ = data.split_validation(train_indices, self.training.validation_fraction)
        self.mean_session = mean_session(store, fit_part)
        if self.design == "reference":
            index = torch.as_tensor(train_indices, dtype=torch.long, device=store.device)
            self.num_steps = max(int(store.session_lengths[index].max()), 1) if len(index) else 1
        else:
            self.num_steps = MAX_GENERATED_SESSIONS
        seed_everything(self.seed)
        self.network = self.build(store)
        outcome = fit_network(self, self.network, self.loss, store, train_indices, self.name, callback)
        return fit_result(outcome, self.name, {"design": self.design, "generated_steps": self.num_steps})

    @torch.no_grad()
    def generate(
        self, store: FeatureStore, indices: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Generated sessions for PEs ``indices`` (which must have a conversation): (sequences (n, T_gen, V)
        left-aligned, lengths (n,) >= 1, empty (n,) bool — nothing survived, the mean-session fallback is used)."""
        if self.network is None or self.mean_session is None:
            raise RuntimeError(f"{self.name}: generate before fit/load_state_dict")
        self.network.to(store.device).eval()
        parts = []
        for batch in store.iterate(np.asarray(indices), PREDICT_BATCH_SIZE):
            steps, keep = self.network.generate(batch.pe_conversation, self.session_threshold)
            parts.append(compact_sessions(steps, keep, self.mean_session))
        if not parts:
            return (
                torch.zeros((0, self.num_steps, store.vocab_size), device=store.device),
                torch.zeros(0, dtype=torch.long, device=store.device),
                torch.zeros(0, dtype=torch.bool, device=store.device),
            )
        return tuple(torch.cat(tensors) for tensors in zip(*parts))

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        return nan_scores(store, indices)

    def state_dict(self) -> dict[str, Any]:
        if self.network is None or self.mean_session is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {
            "design": self.design,
            "num_steps": int(self.num_steps),
            "network": cpu_state(self.network),
            "mean_session": self.mean_session.detach().cpu().clone(),
            "session_threshold": float(self.session_threshold),
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        # A checkpoint of the other design must not be reused silently under this configuration.
        if state["design"] != self.design:
            raise ConfigError(
                f"{self.name}: checkpoint has design {state['design']!r} but "
                f"fidelity.generative_imputation.session_generator is {self.design!r}"
            )
        self.num_steps = int(state["num_steps"])
        self.mean_session = state["mean_session"].clone()
        self.session_threshold = float(state["session_threshold"])
        self.network = self.build(store)
        self.network.load_state_dict(state["network"])
        self.network.to(store.device).eval()


def mean_session(store: FeatureStore, indices: np.ndarray) -> torch.Tensor:
    """Mean tag vector (V,) on the CPU of the unique sessions of PEs ``indices`` (zeros if none)."""
    rows = store.session_rows[torch.as_tensor(np.asarray(indices), dtype=torch.long, device=store.device)]
    rows = torch.unique(rows[rows >= 0])
    if len(rows) == 0:
        return torch.zeros(store.vocab_size)
    return store.session_table[rows].mean(dim=0).cpu()
