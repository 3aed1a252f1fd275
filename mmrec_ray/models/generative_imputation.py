"""Generative Imputation (section 4.2, Fig. 3c; SPEC 5): generate the missing modality from the present one,
then model both with the two-branch joint network. Three explicit stages, each its own registry entry:

(a) ``generative_imputation.conversation_generator`` (``gi_conversation_generator.py``): sessions -> the PE
    conversation vector, trained on the training PEs with both modalities (reference step_1).
(b) ``generative_imputation.session_generator`` (``gi_session_generator.py``): the PE conversation vector ->
    a session sequence, trained on the same PEs (reference step_2); generated steps are thresholded at 0.5, empty
    steps dropped, and a sequence that comes out empty gets the mean-session fallback (the reference crashes).
(c) the joint model (``generative_imputation``, this file; reference step_3, Table 2: batch 128, units 256,
    dropout 0.2), trained on all training PEs: every PE (train and test) missing a modality gets the generated
    one — session-only PEs a generated conversation vector, conversation-only PEs a generated session sequence —
    then ``JointNetwork``: Dense(units) on the conversation ∥ masked GRU(units) on the sessions -> the joint head
    (``fidelity.joint_network.head``), eq. (6).

(a) and (b) are single-stage components with their own hyperparameters, listed in ``depends_on`` so that Tune
and Train fit them once per seed ("generators first") and every joint-model trial reuses them.

Shapes: B PEs in a batch, T steps of the data, T_gen generated steps, V session vocabulary, D embedding width,
J items.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models._multistage import cpu_state, require_dependencies, restore, snapshot
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.gi_conversation_generator import CONVERSATION_GENERATOR, ConversationGenerator
from mmrec_ray.models.gi_session_generator import SESSION_GENERATOR, SessionGenerator, pad_steps
from mmrec_ray.models.layers import JointNetwork
from mmrec_ray.models.neural import fit_network, predict_batches
from mmrec_ray.models.registry import register
from mmrec_ray.training.loop import seed_everything
from mmrec_ray.training.losses import multilabel_bce


class ImputedFeatures:
    """Every PE of a store with its missing modality generated (stage c); present modalities are untouched.

    Generated values are kept only for the PEs that need them: ``conversation_slot`` / ``session_slot`` (N,)
    point into the generated tables (-1 = the PE has the modality itself). The generated session table is cut
    to its longest generated sequence, so its width depends on the generators, never on the data's padding.
    """

    def __init__(
        self,
        store: FeatureStore,
        conversation_generator: ConversationGenerator,
        session_generator: SessionGenerator,
    ):
        self.store = store
        data = store.data
        device = store.device
        no_conversation = np.flatnonzero(~np.asarray(data.has_conversation))
        no_session = np.flatnonzero(~np.asarray(data.has_session))
        self.conversation_slot = _slots(data.num_pes, no_conversation, device)
        self.session_slot = _slots(data.num_pes, no_session, device)
        self.generated_conversation = conversation_generator.generate(store, no_conversation)  # (M, D)
        sequences, lengths, empty = session_generator.generate(store, no_session)  # (M', T_gen, V), (M',)
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
            use_generated[:, None, None], pad_steps(generated, steps), pad_steps(real, steps)
        )
        lengths = torch.where(use_generated, self.generated_lengths[slot.clamp(min=0)], batch.session_lengths)
        return sequence, lengths


def _slots(num_pes: int, pes: np.ndarray, device: torch.device) -> torch.Tensor:
    slot = torch.full((num_pes,), -1, dtype=torch.long)
    slot[torch.as_tensor(pes, dtype=torch.long)] = torch.arange(len(pes))
    return slot.to(device)


@register
class GenerativeImputationRecommender(Recommender):
    """Stage (c): the joint model on generated-where-missing inputs (see the module docstring)."""

    name = "generative_imputation"
    depends_on = (CONVERSATION_GENERATOR, SESSION_GENERATOR)
    trains_on = "all"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.conversation_generator: ConversationGenerator | None = None
        self.session_generator: SessionGenerator | None = None
        self.network: nn.Module | None = None
        self._imputed: ImputedFeatures | None = None

    def imputed(self, store: FeatureStore) -> ImputedFeatures:
        """The store's PEs with generated missing modalities; computed once per store (generators are frozen)."""
        if self._imputed is None or self._imputed.store is not store:
            self._imputed = ImputedFeatures(store, self.conversation_generator, self.session_generator)
        return self._imputed

    def build_network(self, store: FeatureStore) -> nn.Module:
        return JointNetwork.sized_for(store, self.params, self.training.fidelity.joint_network.head)

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        imputed = self.imputed(batch.store)
        sequence, lengths = imputed.sessions(batch)
        return network(imputed.conversation(batch), sequence, lengths)

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return multilabel_bce(
            self.logits(network, batch), batch.targets, reduction=self.training.fidelity.loss_reduction
        )

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        generators = require_dependencies(self, dependencies)
        self.conversation_generator = generators[CONVERSATION_GENERATOR]
        self.session_generator = generators[SESSION_GENERATOR]
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
                "session_threshold": float(self.session_generator.session_threshold),
                "session_generator": self.session_generator.design,
                "conversation_generator": self.conversation_generator.design,
            },
        )

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.network is None or self.session_generator is None:
            raise RuntimeError(f"{self.name}: predict before fit/load_state_dict")
        self.network.to(store.device)
        return predict_batches(self.network, self.logits, store, np.asarray(indices))

    def state_dict(self) -> dict[str, Any]:
        if self.network is None or self.conversation_generator is None or self.session_generator is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        return {
            "network": cpu_state(self.network),
            CONVERSATION_GENERATOR: snapshot(self.conversation_generator),
            SESSION_GENERATOR: snapshot(self.session_generator),
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.conversation_generator = restore(
            CONVERSATION_GENERATOR, state[CONVERSATION_GENERATOR], self.training, store
        )
        self.session_generator = restore(SESSION_GENERATOR, state[SESSION_GENERATOR], self.training, store)
        self._imputed = None
        self.network = self.build_network(store)
        self.network.load_state_dict(state["network"])
        self.network.to(store.device)
        self.network.eval()
