"""Generative Imputation, stage (a): the sessions -> conversation-vector generator (paper section 4.2, Fig. 3c).

A stage component (``reported = False``): the joint model ``generative_imputation`` lists it in ``depends_on``,
so Tune and Train fit it once per seed and every joint-model trial reuses it. It has its own hyperparameters
(``generative_imputation.conversation_generator`` in ``configs/hyperparameters.yaml``: batch 128, units 64,
dropout 0.4, the values hard-coded in the reference's ``model_generative_imputation_step_1.py`` line 73).

Training data (reference step_1 lines 25-58): the training PEs with both modalities; input the PE's session
sequence, target the PE's mean conversation embedding; the last validation_fraction (10 %) by PE id validates.
The reference pads sequences on the left and masks them; our masked GRU over left-aligned steps reads the same
real steps in the same order, so the alignment is irrelevant.

Network, ``fidelity.generative_imputation.conversation_generator``:

- ``reference`` (step_1 lines 75-80): masked GRU(units) -> Dropout -> Dense(units, ReLU) -> Linear(D).
- ``linear`` (this project before the fidelity review): masked GRU(units) -> Dropout -> Linear(D).

Loss (step_1 line 82): squared error, averaged over the D features as Keras's MSE
(``fidelity.loss_reduction``: ``sum`` sums them), mean over PEs.

Shapes: B PEs in a batch, T steps, V session vocabulary, H = units, D sentence-embedding width.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.errors import ConfigError
from mmrec_ray.models._multistage import cpu_state, nan_scores
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import MaskedGRU
from mmrec_ray.models.neural import PREDICT_BATCH_SIZE, fit_network, fit_result
from mmrec_ray.models.registry import register
from mmrec_ray.training.loop import seed_everything
from mmrec_ray.training.losses import mse_per_row

CONVERSATION_GENERATOR = "generative_imputation.conversation_generator"
ConversationDesign = Literal["reference", "linear"]


class SessionsToConversation(nn.Module):
    """forward(session_sequence (B, T, V) left-aligned, session_lengths (B,)) -> conversation vector (B, D).

    ``design="reference"``: GRU -> Dropout -> Dense(units, ReLU) -> Linear(D); ``"linear"``: GRU -> Dropout ->
    Linear(D). Padded steps never enter the GRU (``MaskedGRU``), so a wider T changes nothing.
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int, units: int, dropout: float, design: ConversationDesign
    ):
        super().__init__()
        if design not in ("reference", "linear"):
            raise ValueError(
                f"unknown conversation-generator design {design!r}; expected 'reference' or 'linear'"
            )
        self.design = design
        self.encoder = MaskedGRU(vocab_size, units)
        self.dropout = nn.Dropout(dropout)
        # The reference's extra hidden layer; absent in the linear design (so its state dict has no such keys).
        self.hidden = nn.Linear(units, units) if design == "reference" else None
        self.output = nn.Linear(units, embedding_dim)

    def forward(self, session_sequence: torch.Tensor, session_lengths: torch.Tensor) -> torch.Tensor:
        features = self.dropout(self.encoder(session_sequence, session_lengths))  # (B, H)
        if self.hidden is not None:
            features = torch.relu(self.hidden(features))
        return self.output(features)


@register
class ConversationGenerator(Recommender):
    """Stage (a) of Generative Imputation (see the module docstring). ``predict`` gives NaN rows: a generator
    does not recommend; ``generate`` is what the joint model calls."""

    name = CONVERSATION_GENERATOR
    reported = False
    trains_on = "both"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.network: SessionsToConversation | None = None
        self.design: ConversationDesign = training.fidelity.generative_imputation.conversation_generator

    def build(self, store: FeatureStore) -> SessionsToConversation:
        return SessionsToConversation(
            store.vocab_size, store.embedding_dim, self.params.units, self.params.dropout, self.design
        )

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        generated = network(batch.session_sequence, batch.session_lengths)
        return mse_per_row(generated, batch.pe_conversation, reduction=self.training.fidelity.loss_reduction)

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        seed_everything(self.seed)
        self.network = self.build(store)
        train_indices = store.data.train_indices(self.trains_on)
        outcome = fit_network(self, self.network, self.loss, store, train_indices, self.name, callback)
        return fit_result(outcome, self.name, {"design": self.design})

    @torch.no_grad()
    def generate(self, store: FeatureStore, indices: np.ndarray) -> torch.Tensor:
        """Generated conversation vectors (n, D) for PEs ``indices`` (which must have sessions)."""
        if self.network is None:
            raise RuntimeError(f"{self.name}: generate before fit/load_state_dict")
        self.network.to(store.device).eval()
        parts = [
            self.network(batch.session_sequence, batch.session_lengths)
            for batch in store.iterate(np.asarray(indices), PREDICT_BATCH_SIZE)
        ]
        return torch.cat(parts) if parts else torch.zeros((0, store.embedding_dim), device=store.device)

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        return nan_scores(store, indices)

    def state_dict(self) -> dict[str, Any]:
        if self.network is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {"design": self.design, "network": cpu_state(self.network)}

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        # A checkpoint of the other design must not be reused silently under this configuration.
        if state["design"] != self.design:
            raise ConfigError(
                f"{self.name}: checkpoint has design {state['design']!r} but "
                f"fidelity.generative_imputation.conversation_generator is {self.design!r}"
            )
        self.network = self.build(store)
        self.network.load_state_dict(state["network"])
        self.network.to(store.device).eval()
