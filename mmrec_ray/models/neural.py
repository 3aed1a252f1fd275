"""The common wrapper for recommenders that are one network trained with the generic loop on eq. (6).

A subclass says how to build its network (``build_network``), how to turn a Batch into logits (``logits``) and
which PEs it serves (``serves``); fitting, prediction (sigmoid of eq. 5, NaN rows where not served) and the
state dict come from here. Multi-stage models may reuse ``predict_batches`` and ``fit_network`` for their stages.

Shapes: B PEs in a batch, J items.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np
import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.training.loop import LossFn, TrainOutcome, seed_everything, train
from mmrec_ray.training.losses import multilabel_bce

PREDICT_BATCH_SIZE = 4096  # prediction only: large batches, no gradients


def fit_network(
    recommender: Recommender,
    network: nn.Module,
    loss_fn: LossFn,
    store: FeatureStore,
    train_indices: np.ndarray,
    stage: str,
    callback: EpochCallback | None,
    batch_size: int | None = None,
    validation_fraction: float | None = None,
) -> TrainOutcome:
    """Split ``train_indices`` (SPEC 4: the last validation_fraction by PE id is validation; a model may use its
    own fraction, as the reference's Knowledge Distillation does) and run the loop."""
    fit_part, validation_part = store.data.split_validation(
        train_indices, validation_fraction or recommender.training.validation_fraction
    )
    return train(
        network,
        loss_fn,
        store,
        fit_part,
        validation_part,
        batch_size or recommender.params.batch_size,
        recommender.training,
        recommender.seed,
        stage=stage,
        callback=callback,
    )


@torch.no_grad()
def predict_batches(
    network: nn.Module,
    logits_fn,
    store: FeatureStore,
    indices: np.ndarray,
    serves_fn=None,
    batch_size: int = PREDICT_BATCH_SIZE,
) -> np.ndarray:
    """sigmoid(logits_fn(network, batch)) over ``indices`` -> (n, J) float32; rows where ``serves_fn(batch)``
    (B,) bool is False are NaN."""
    network.eval()
    out = np.empty((len(indices), store.num_items), dtype=np.float32)
    start = 0
    for batch in store.iterate(np.asarray(indices), batch_size):
        scores = torch.sigmoid(logits_fn(network, batch)).float()
        if serves_fn is not None:
            scores = torch.where(serves_fn(batch)[:, None], scores, torch.full_like(scores, float("nan")))
        out[start : start + len(batch)] = scores.cpu().numpy()
        start += len(batch)
    return out


def fit_result(outcome: TrainOutcome, stage: str, extra: dict[str, Any] | None = None) -> FitResult:
    return FitResult(
        history={stage: outcome.history},
        best_validation_loss=outcome.best_validation_loss,
        best_epoch=outcome.best_epoch,
        extra=dict(extra or {}),
    )


class NetworkRecommender(Recommender):
    """One network, trained on ``trains_on`` PEs with ``multilabel_bce``; see the module docstring."""

    network: nn.Module | None = None

    @abstractmethod
    def build_network(self, store: FeatureStore) -> nn.Module:
        """A freshly initialised network sized from ``store`` (dims) and ``self.params`` (units, dropout)."""

    @abstractmethod
    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        """(B, J) logits for a batch."""

    def serves(self, batch: Batch) -> torch.Tensor:
        """(B,) bool: PEs this model gives scores for (others get NaN rows)."""
        return torch.ones(len(batch), dtype=torch.bool, device=batch.index.device)

    def prepare(self, store: FeatureStore, train_indices: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Hook run before the network is built (e.g. imputation statistics from the training PEs)."""

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return multilabel_bce(
            self.logits(network, batch), batch.targets, reduction=self.training.fidelity.loss_reduction
        )

    def fit(
        self, store: FeatureStore, dependencies: dict[str, Recommender], callback: EpochCallback | None = None
    ) -> FitResult:
        train_indices = store.data.train_indices(self.trains_on)
        self.prepare(store, train_indices)
        seed_everything(self.seed)  # the initial weights depend on the seed only
        self.network = self.build_network(store)
        outcome = fit_network(self, self.network, self.loss, store, train_indices, self.name, callback)
        return fit_result(outcome, self.name)

    def predict(self, store: FeatureStore, indices: np.ndarray) -> np.ndarray:
        if self.network is None:
            raise RuntimeError(f"{self.name}: predict before fit/load_state_dict")
        self.network.to(store.device)
        return predict_batches(self.network, self.logits, store, indices, self.serves)

    def extra_state(self) -> dict[str, Any]:
        """Non-network state to save (e.g. imputation statistics); restored by ``load_extra_state``."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        pass

    def state_dict(self) -> dict[str, Any]:
        if self.network is None:
            raise RuntimeError(f"{self.name}: nothing to save before fit")
        network_state = {
            key: value.detach().cpu().clone() for key, value in self.network.state_dict().items()
        }
        return {"network": network_state, "extra": self.extra_state()}

    def load_state_dict(self, state: dict[str, Any], store: FeatureStore) -> None:
        self.load_extra_state(state.get("extra", {}))
        self.network = self.build_network(store)
        self.network.load_state_dict(state["network"])
        self.network.to(store.device)
        self.network.eval()
