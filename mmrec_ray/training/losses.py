"""Losses (models return logits; the training loop knows nothing about either).

Shapes: B PEs in a batch, J items. Every loss here is a per-PE value averaged over the batch (so
``training.loop`` can weight batches by their size). Per PE it is either averaged over the J items
(``reduction="mean"``: what Keras's ``binary_crossentropy`` / ``mean_squared_error`` report, so validation losses
are comparable with the reference code's logs) or summed over them (``reduction="sum"``: the paper's eq. (6)
literally). The two differ by the constant factor J (or D): the same minimiser and the same early-stopping epoch,
but Adam's epsilon and the logged values scale differently. Switch: ``fidelity.loss_reduction``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Reduction = Literal["mean", "sum"]


def _over_items(per_item: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    """(B, J) -> (B,): the per-PE value, mean or sum over the last axis."""
    if reduction == "mean":
        return per_item.mean(dim=-1)
    if reduction == "sum":
        return per_item.sum(dim=-1)
    raise ValueError(f"unknown loss reduction {reduction!r}; expected 'mean' or 'sum'")


def multilabel_bce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    reduction: Reduction = "mean",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. (6): binary cross-entropy over items (mean or sum, see the module docstring), mean over the batch.

    logits (B, J) raw scores o; targets (B, J) multi-hot (float) of the purchased items; weights (B,) optional
    per-PE loss weights (Keras's ``sample_weight``: the weighted per-PE losses are summed and divided by B, not
    by the sum of the weights). Returns a scalar. Computed from logits (log-sum-exp form) for numerical stability
    instead of on sigmoid outputs.
    """
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    per_item = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    per_pe = _over_items(per_item, reduction)
    if weights is not None:
        per_pe = per_pe * weights.to(per_pe.dtype)
    return per_pe.mean()


def soft_label_bce(
    logits: torch.Tensor,
    teacher_probabilities: torch.Tensor,
    row_mask: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Distillation loss (section 5.2): BCE of the student's logits against a teacher's sigmoid probabilities
    (soft labels in [0, 1]), over items (mean or sum), mean over the batch.

    logits (B, J); teacher_probabilities (B, J) in [0, 1] — the teacher's ``predict`` output, which must not
    carry gradients; row_mask (B,) bool, optional: rows to include (e.g. PEs the teacher serves). The mean is
    over the included rows but normalised by B, so that ``α·soft_label_bce`` keeps the same per-PE scale as
    ``multilabel_bce`` when a few rows are masked; an all-False mask gives 0.
    """
    if logits.shape != teacher_probabilities.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and teacher probabilities {tuple(teacher_probabilities.shape)} differ"
        )
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    soft = teacher_probabilities.detach().to(logits.dtype)
    if row_mask is not None:
        # NaN rows (teacher does not serve the PE) would poison the sum even when multiplied by 0.
        soft = torch.where(row_mask[:, None], soft, torch.zeros_like(soft))
    per_row = _over_items(F.binary_cross_entropy_with_logits(logits, soft, reduction="none"), reduction)
    if row_mask is not None:
        per_row = per_row * row_mask.to(per_row.dtype)
    return per_row.sum() / logits.shape[0]


def mse_per_row(
    prediction: torch.Tensor, target: torch.Tensor, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Squared error over features (mean = Keras's MSE, or sum), mean over the batch: (B, F), (B, F) -> scalar.

    For regression stages such as Generative Imputation's sessions -> conversation-vector generator.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ")
    if prediction.shape[0] == 0:
        return prediction.sum() * 0.0
    return _over_items((prediction - target) ** 2, reduction).mean()
