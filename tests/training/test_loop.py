import numpy as np
import torch
from torch import nn

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.training.loop import train
from tests.data.test_tensors import tiny_prepared


class PeLinear(nn.Module):
    def __init__(self, dim: int, items: int):
        super().__init__()
        self.linear = nn.Linear(dim, items)

    def forward(self, batch):
        return self.linear(batch.pe_conversation)


def bce(module, batch):
    return nn.functional.binary_cross_entropy_with_logits(module(batch), batch.targets)


def test_early_stopping_restores_best_weights():
    store = FeatureStore(tiny_prepared())
    module = PeLinear(2, 2)
    seen = []
    # validation = a PE with the opposite label pattern: the train loss falls while validation rises
    outcome = train(
        module,
        bce,
        store,
        np.array([0]),
        np.array([1]),
        batch_size=4,
        training=TrainingConfig(max_epochs=50, patience=3, learning_rate=0.1),
        seed=0,
        callback=lambda stage, epoch, tr, va: seen.append((stage, epoch, va)),
    )
    val_losses = [h["val"] for h in outcome.history]
    assert len(outcome.history) < 50  # stopped early
    assert outcome.best_validation_loss == min(val_losses)
    assert outcome.best_epoch == 1 + int(np.argmin(val_losses))
    assert len(outcome.history) == outcome.best_epoch + 3  # patience 3 after the best epoch
    assert [s[1] for s in seen] == list(range(1, len(outcome.history) + 1))
    from mmrec_ray.training.loop import evaluate_loss

    restored = evaluate_loss(module, bce, store, np.array([1]), 4)
    assert abs(restored - outcome.best_validation_loss) < 1e-6


def test_same_seed_same_weights():
    store = FeatureStore(tiny_prepared())
    weights = []
    for _ in range(2):
        torch.manual_seed(0)
        module = PeLinear(2, 2)
        train(module, bce, store, np.array([0, 1]), np.array([1]), 1, TrainingConfig(max_epochs=3), seed=5)
        weights.append(module.linear.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)
