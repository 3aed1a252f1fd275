"""Knowledge Distillation (section 4.2, Fig. 3b; SPEC 5): a two-branch student trained on the PEs that had both
modalities, with soft labels from the separately trained Conversation and Web Session teachers (same seed).

Stages (the teachers are registry models fitted once per seed by the runner and passed in ``dependencies``):

1. soft labels: each teacher's probabilities on the training PEs with both modalities (fixed, no gradients);
2. student: ``JointNetwork`` — Dense(units) on the PE conversation vector (B, D) ∥ masked GRU(units) on the
   session sequence (B, T, V) -> Dropout -> Dense(units, ReLU) -> Linear(J) — trained with

       L = BCE(y) + α · BCE(p_conversation_teacher) + β · BCE(p_session_teacher)

   every term the binary cross-entropy over the J items (eq. 6, section 5.2; averaged over items as Keras does
   unless ``fidelity.loss_reduction: sum``). As in the reference script (model_knowledge_distillation.py), the
   student validates on the last 11 % of its training PEs (``fidelity.knowledge_distillation.validation_fraction``)
   and its joint network has the reference head (``layers.JointNetwork``). α and β are "in proportion
   to how much data the student models are trained on": α = share of training PEs (all non-test PEs) that had
   a conversation, β = share that had a session (≈ 0.32 and 0.87 on the released data). Both are computed from
   the data and returned in ``FitResult.extra``.

Prediction: PEs with both modalities -> the student; conversation-only PEs -> the Conversation teacher's scores,
session-only PEs -> the Web Session teacher's scores (exactly the teacher's output).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models._multistage import cpu_state, require_dependencies, restore, snapshot
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.layers import JointNetwork
from mmrec_ray.models.neural import fit_network, fit_result, predict_batches
from mmrec_ray.models.registry import register
from mmrec_ray.training.loop import seed_everything
from mmrec_ray.training.losses import multilabel_bce, soft_label_bce

CONVERSATION_TEACHER, SESSION_TEACHER = "conversation", "session"


def distillation_weights(data) -> tuple[float, float]:
    """(α, β): the shares of training PEs (every non-test PE) with a conversation and with a session."""
    train = data.train_indices("all")
    if len(train) == 0:
        raise ValueError("knowledge_distillation: no training PEs to compute α and β from")
    alpha = float(np.asarray(data.has_conversation)[train].mean())
    beta = float(np.asarray(data.has_session)[train].mean())
    return alpha, beta


@register
class KnowledgeDistillationRecommender(Recommender):
    name = "knowledge_distillation"
    depends_on = (CONVERSATION_TEACHER, SESSION_TEACHER)
    trains_on = "both"

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.student: nn.Module | None = None
        self.teachers: dict[str, Recommender] = {}
        self.alpha = float("nan")
        self.beta = float("nan")

    def build_student(self, store: FeatureStore) -> nn.Module:
        return JointNetwork.sized_for(store, self.params, self.training.fidelity.joint_network.head)

    @staticmethod
    def student_logits(network: nn.Module, batch: Batch) -> torch.Tensor:
        return network(batch.pe_conversation, batch.session_sequence, batch.session_lengths)

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        self.teachers = require_dependencies(self, dependencies)
        data = store.data
        self.alpha, self.beta = distillation_weights(data)
        train_indices = data.train_indices(self.trains_on)

        # Soft labels once, for every PE the student trains or validates on; indexed by PE row.
        soft = {}
        for name, teacher in self.teachers.items():
            table = torch.zeros((data.num_pes, store.num_items), dtype=torch.float32, device=store.device)
            table[torch.as_tensor(train_indices, device=store.device)] = torch.as_tensor(
                teacher.predict(store, train_indices), device=store.device
            )
            if not bool(torch.isfinite(table).all()):
                raise ValueError(
                    f"knowledge_distillation: teacher {name!r} gave non-finite scores on training PEs"
                )
            soft[name] = table
        alpha, beta = self.alpha, self.beta
        reduction = self.training.fidelity.loss_reduction

        def loss(network: nn.Module, batch: Batch) -> torch.Tensor:
            logits = self.student_logits(network, batch)
            return (
                multilabel_bce(logits, batch.targets, reduction=reduction)
                + alpha * soft_label_bce(logits, soft[CONVERSATION_TEACHER][batch.index], reduction=reduction)
                + beta * soft_label_bce(logits, soft[SESSION_TEACHER][batch.index], reduction=reduction)
            )

        seed_everything(self.seed)  # the student's initial weights depend on the seed only
        self.student = self.build_student(store)
        outcome = fit_network(
            self,
            self.student,
            loss,
            store,
            train_indices,
            "student",
            callback,
            validation_fraction=self.training.fidelity.knowledge_distillation.validation_fraction,
        )
        return fit_result(outcome, "student", extra={"alpha": self.alpha, "beta": self.beta})

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.student is None or not self.teachers:
            raise RuntimeError("knowledge_distillation: predict before fit/load_state_dict")
        indices = np.asarray(indices)
        has_conversation = np.asarray(store.data.has_conversation)[indices]
        has_session = np.asarray(store.data.has_session)[indices]
        scores = np.full((len(indices), store.num_items), np.nan, dtype=np.float32)
        routes = (
            (has_conversation & has_session, None),
            (has_conversation & ~has_session, CONVERSATION_TEACHER),
            (has_session & ~has_conversation, SESSION_TEACHER),
        )
        for rows, teacher in routes:
            if not rows.any():
                continue
            if teacher is None:
                self.student.to(store.device)
                scores[rows] = predict_batches(self.student, self.student_logits, store, indices[rows])
            else:
                scores[rows] = self.teachers[teacher].predict(store, indices[rows])
        return scores

    def state_dict(self) -> dict[str, Any]:
        if self.student is None:
            raise RuntimeError("knowledge_distillation: nothing to save before fit")
        return {
            "student": cpu_state(self.student),
            "alpha": self.alpha,
            "beta": self.beta,
            # Self-contained: the checkpoint restores the teachers it routes single-modality PEs to.
            "teachers": {name: snapshot(teacher) for name, teacher in self.teachers.items()},
        }

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.alpha, self.beta = float(state["alpha"]), float(state["beta"])
        self.teachers = {
            name: restore(name, state["teachers"][name], self.training, store) for name in self.depends_on
        }
        self.student = self.build_student(store)
        self.student.load_state_dict(state["student"])
        self.student.to(store.device)
        self.student.eval()
