import math

import pytest
import torch

from mmrec_ray.training.losses import mse_per_row, multilabel_bce, soft_label_bce


def test_multilabel_bce_is_eq6_summed_over_items_mean_over_batch():
    logits = torch.tensor([[0.0, 2.0, -1.0], [1.0, -3.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    p = torch.sigmoid(logits)
    per_pe = -(targets * p.log() + (1 - targets) * (1 - p).log()).sum(dim=1)
    torch.testing.assert_close(multilabel_bce(logits, targets), per_pe.mean())
    assert math.isclose(
        float(multilabel_bce(torch.zeros(1, 4), torch.zeros(1, 4))), 4 * math.log(2), rel_tol=1e-6
    )


def test_multilabel_bce_is_stable_for_large_logits_and_checks_shapes():
    loss = multilabel_bce(torch.tensor([[100.0, -100.0]]), torch.tensor([[0.0, 1.0]]))
    assert math.isfinite(float(loss)) and float(loss) > 100
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
    torch.testing.assert_close(mse_per_row(torch.ones(2, 3), torch.zeros(2, 3)), torch.tensor(3.0))
