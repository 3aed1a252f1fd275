import math

import pytest
import torch

from mmrec_ray.training.losses import mse_per_row, multilabel_bce, soft_label_bce


def test_multilabel_bce_is_keras_mean_over_items_by_default_and_eq6_sum_on_request():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    p = torch.sigmoid(logits)
    per_item = -(targets * p.log() + (1 - targets) * (1 - p).log())
    torch.testing.assert_close(multilabel_bce(logits, targets), per_item.mean(dim=1).mean())
    torch.testing.assert_close(multilabel_bce(logits, targets, reduction="sum"), per_item.sum(dim=1).mean())
    assert math.isclose(
        float(multilabel_bce(torch.zeros(1, 4), torch.zeros(1, 4))), math.log(2), rel_tol=1e-6
    )
    with pytest.raises(ValueError, match="reduction"):
        multilabel_bce(logits, targets, reduction="max")


def test_multilabel_bce_sample_weights_divide_by_batch_size_as_keras():
    logits = torch.tensor([[0.0, 2.0], [1.0, -3.0], [0.3, 0.1]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    weights = torch.tensor([2.0, 1.0, 0.5])
    per_pe = torch.stack([multilabel_bce(logits[[i]], targets[[i]]) for i in range(3)])
    # Keras: sum(w_i * loss_i) / batch size (not / sum of weights).
    torch.testing.assert_close(multilabel_bce(logits, targets, weights=weights), (weights * per_pe).sum() / 3)


def test_multilabel_bce_is_stable_for_large_logits_and_checks_shapes():
    loss = multilabel_bce(torch.tensor([[100.0, -100.0]]), torch.tensor([[0.0, 1.0]]))
    assert math.isfinite(float(loss)) and float(loss) > 99  # mean of two ~100 terms
    with pytest.raises(ValueError, match="shape"):
        multilabel_bce(torch.zeros(2, 3), torch.zeros(2, 4))


def test_soft_label_bce_matches_hard_labels_and_masks_rows():
    logits = torch.randn(3, 4, requires_grad=True)
    targets = (torch.rand(3, 4) > 0.5).float()
    torch.testing.assert_close(soft_label_bce(logits, targets), multilabel_bce(logits, targets))
    teacher = torch.rand(3, 4)
    teacher[1] = float("nan")  # a PE the teacher does not serve
    mask = torch.tensor([True, False, True])
    loss = soft_label_bce(logits, teacher, mask)
    expected = (soft_label_bce(logits[[0]], teacher[[0]]) + soft_label_bce(logits[[2]], teacher[[2]])) / 3
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.equal(logits.grad[1], torch.zeros(4))


def test_mse_per_row():
    torch.testing.assert_close(mse_per_row(torch.ones(2, 3), torch.zeros(2, 3)), torch.tensor(1.0))
    torch.testing.assert_close(
        mse_per_row(torch.ones(2, 3), torch.zeros(2, 3), reduction="sum"), torch.tensor(3.0)
    )
