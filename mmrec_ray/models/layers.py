"""Building blocks shared by the neural models (paper section 4, SPEC 5).

Shape letters: B PEs in a batch, T time steps (events), F input features per step, H hidden units, D sentence
embedding width, V vocabulary (tags/keywords), J items.

All networks return logits (B, J); the sigmoid of eq. (5) is applied by the recommender at prediction time and
the loss (eq. 6) lives in ``mmrec_ray.training.losses``.

The paper's "two-layer networks with dropout on the first hidden layer; the second layer is a dense layer with
ReLU" (section 5.2 and footnote 5) becomes, for every model::

    first hidden layer (Dense(units) on a vector, or a masked GRU(units) on a sequence)
        -> Dropout(dropout) -> Dense(units, ReLU) -> Linear(J) logits

``OutputHead`` is the part after the first hidden layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from mmrec_ray.models.fused_gru import gru_final_state

Activation = Literal["linear", "relu", "tanh"]


def _activation(name: Activation) -> nn.Module:
    if name == "linear":
        return nn.Identity()
    if name == "relu":
        return nn.ReLU()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown activation {name!r}")


_gru_implementation: Literal["auto", "torch"] = "auto"


@contextlib.contextmanager
def force_gru_implementation(implementation: Literal["auto", "torch"]) -> Iterator[None]:
    """Run every ``MaskedGRU`` with ``implementation`` inside the block (benchmarks' baselines, tests)."""
    global _gru_implementation
    previous, _gru_implementation = _gru_implementation, implementation
    try:
        yield
    finally:
        _gru_implementation = previous


def left_align_steps(steps: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the kept steps of each sequence to the front, in their order, and zero the rest.

    steps (B, T, F), keep (B, T) bool -> (steps (B, T, F) left-aligned, lengths (B,) = kept steps per sequence):
    the input ``MaskedGRU`` reads. A stable argsort of ~keep gives the order.
    """
    order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    lengths = keep.sum(dim=1)
    position = torch.arange(steps.shape[1], device=steps.device)
    real = (position[None, :] < lengths[:, None]).to(steps.dtype)
    return torch.take_along_dim(steps, order[..., None], dim=1) * real[..., None], lengths


class MaskedGRU(nn.Module):
    """A single-layer GRU (eq. 3) that returns the hidden state after each sequence's last REAL step.

    Input ``inputs`` (B, T, F) float with events left-aligned, ``lengths`` (B,) int number of real steps.
    Output (B, H). Steps at positions >= length never enter the recurrence (packed sequences), so padding —
    however long T is and whatever the padded values are — changes nothing. A sequence of length 0 gets the
    zero state (the GRU's initial state), which is what it would have after reading nothing.

    The public reference code feeds padded steps through its Latent Feature GRU; this layer is the fix.

    On the CPU the recurrence runs in ``fused_gru`` (one autograd node, weight gradients in one GEMM; 1.03-1.22x
    faster per training step here), on CUDA in cuDNN's packed GRU; ``force_gru_implementation("torch")`` runs
    ``nn.GRU`` everywhere (the benchmarks' naive baseline). Both read the same ``self.gru`` parameters.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        batch = inputs.shape[0]
        output = inputs.new_zeros((batch, self.hidden_size))
        if batch == 0:
            return output
        lengths = lengths.to(torch.long)
        nonempty = lengths > 0
        if not bool(nonempty.any()):
            return output
        # pack_padded_sequence wants CPU lengths >= 1; empty sequences are skipped and keep the zero state.
        all_nonempty = bool(nonempty.all())
        selected = inputs if all_nonempty else inputs[nonempty]
        selected_lengths = lengths if all_nonempty else lengths[nonempty]
        packed = pack_padded_sequence(
            selected, selected_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        if _gru_implementation == "auto" and not packed.data.is_cuda:
            final = gru_final_state(
                packed.data,
                packed.batch_sizes.tolist(),
                self.gru.weight_ih_l0,
                self.gru.weight_hh_l0,
                self.gru.bias_ih_l0,
                self.gru.bias_hh_l0,
            )
            final = final[packed.unsorted_indices]  # (B', H) back in the input order
        else:
            _, hidden = self.gru(packed)  # (1, B', H), already in the input order
            final = hidden[0]
        if all_nonempty:
            return final
        return output.index_put((nonempty.nonzero(as_tuple=True)[0],), final)


class DenseEncoder(nn.Module):
    """Dense(units) with an optional activation: (B, F) -> (B, H). The first hidden layer on vector inputs."""

    def __init__(self, in_features: int, units: int, activation: Activation = "linear"):
        super().__init__()
        self.linear = nn.Linear(in_features, units)
        self.activation = _activation(activation)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.activation(self.linear(inputs))


class TanhProjection(nn.Module):
    """tanh(W x + b): maps a modality into a shared latent space (eq. 4 for Latent Feature, eqs. 7 and 9 for
    Relative Representation). Works on any leading shape: (..., F) -> (..., H)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(inputs))


class OutputHead(nn.Module):
    """Dropout -> Dense(units, ReLU) -> Linear(J): the second layer and the output layer of every model.

    Input (B, F): the first hidden layer's output (GRU state, Dense output, or a concatenation of both);
    output (B, J) logits o of eq. (5).
    """

    def __init__(self, in_features: int, units: int, num_items: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(in_features, units)
        self.output = nn.Linear(units, num_items)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(self.dropout(features))))


class SequenceClassifier(nn.Module):
    """Masked GRU(units) over per-step features -> OutputHead: the Web Session network [Bruun et al. 2022] and
    the shared back-end of Keyword, Latent Feature and Relative Representation (eq. 3 then eq. 5).

    forward(inputs (B, T, F), lengths (B,)) -> logits (B, J).
    """

    def __init__(self, input_size: int, units: int, num_items: int, dropout: float):
        super().__init__()
        self.encoder = MaskedGRU(input_size, units)
        self.head = OutputHead(units, units, num_items, dropout)

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(inputs, lengths))


JointHead = Literal["reference", "single"]


class JointNetwork(nn.Module):
    """The two-branch network of the imputation and distillation models (Fig. 3b/3c): the Conversation model's
    first layer and the Web Session model's GRU side by side, concatenated, then the joint layers.

    forward(conversation (B, D) PE-level mean embedding, session_sequence (B, T, V) left-aligned session
    vectors, session_lengths (B,)) -> logits (B, J).

    Dense(units) on the conversation ∥ masked GRU(units) on the sessions -> (B, 2·units), then

    - ``head="reference"`` (the reference code's knowledge_distillation, generative_imputation_step_3 and
      neutral_imputation scripts): Dense(units, ReLU) -> Dropout -> Dense(units, ReLU) -> Linear(J);
    - ``head="single"`` (this project before the fidelity review; ``fidelity.joint_network.head``): the shared
      ``OutputHead``, Dropout -> Dense(units, ReLU) -> Linear(J).

    A PE with no session (length 0) gets the GRU's zero state on that branch; imputation models fill the
    missing modality before calling this, so that only happens where a caller chooses it.
    """

    def __init__(
        self,
        conversation_dim: int,
        session_dim: int,
        units: int,
        num_items: int,
        dropout: float,
        conversation_activation: Activation = "linear",
        head: JointHead = "reference",
    ):
        super().__init__()
        self.conversation_encoder = DenseEncoder(conversation_dim, units, conversation_activation)
        self.session_encoder = MaskedGRU(session_dim, units)
        if head == "reference":
            self.head = nn.Sequential(
                nn.Linear(2 * units, units),
                nn.ReLU(),
                OutputHead(units, units, num_items, dropout),
            )
        elif head == "single":
            self.head = OutputHead(2 * units, units, num_items, dropout)
        else:
            raise ValueError(f"unknown joint head {head!r}; expected 'reference' or 'single'")

    @classmethod
    def sized_for(cls, store, params, head: JointHead) -> JointNetwork:
        """The joint network for a FeatureStore's dimensions (D, V, J) and a model's units and dropout."""
        return cls(
            store.embedding_dim, store.vocab_size, params.units, store.num_items, params.dropout, head=head
        )

    def forward(
        self, conversation: torch.Tensor, session_sequence: torch.Tensor, session_lengths: torch.Tensor
    ) -> torch.Tensor:
        features = torch.cat(
            [
                self.conversation_encoder(conversation),
                self.session_encoder(session_sequence, session_lengths),
            ],
            dim=-1,
        )
        return self.head(features)
