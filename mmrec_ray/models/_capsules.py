"""Multi-interest extraction for UiM (Xu et al., section III-C, eqs. 5-8) with MIND's behaviour-to-interest (B2I)
dynamic routing and its adaptive number of interests, and the two ways of scoring items against interests.

Shapes: B PEs, T events, K interests (capsules), d latent width, J items.

Interest count (MIND): a user with n events gets K_u = max(1, min(K, floor(log2 n))) interests (n = 0 -> 1).

Routing, given event vectors e_i (B, T, d), event weights a_i >= 0 (B, T; the profile-guided attention of eq. 4,
zero at padding) and per-interest maps W_k (K, d, d):

    û_ik = W_k e_i                                               (eq. 5's W_j e_i)
    b_ik = 0;  repeat R times:
        c_ik = exp b_ik / Σ_{k' < K_u} exp b_ik'   over the user's K_u interests only   (eq. 6)
        h_k  = Σ_i c_ik a_i û_ik                                                        (eq. 5)
        s_k  = squash(h_k) = ||h_k||² / (1 + ||h_k||²) · h_k / ||h_k||                  (eq. 8)
        b_ik += û_ik · s_k                                                              (eq. 7)

Per-interest maps W_k (UiM's eq. 5) rather than MIND's one shared map S: with distinct maps the capsules already
differ on the first iteration, so the routing logits can start at zero — MIND draws them at random only to
break the symmetry of a shared S — and a fitted model scores deterministically. As ComiRec's dynamic-routing
code does, the agreement update treats û as a constant (no gradient through the routing logits); gradients flow
through the last iteration's weighted sum.

Scoring an item j with embedding E_j against interests o_k (B, K, d), over the K_u active interests:

- prediction (UiM eq. 1): score_j = max_k o_k · E_j;
- training (MIND's label-aware attention, each item in turn being the label): w_kj = softmax_k(p · o_k · E_j),
  score_j = Σ_k w_kj o_k · E_j. MIND writes the attention as softmax(pow(o·E, p)); the scaled form keeps the
  sign of negative scores. p -> ∞ gives the max; a finite p lets every active interest receive gradient.
"""

from __future__ import annotations

import math

import torch
from torch import nn

ROUTING_ITERATIONS = 3  # MIND and ComiRec use 3
ATTENTION_POWER = 1.0  # p of the label-aware attention
_EPSILON = 1e-9


def interest_count(lengths: torch.Tensor, max_interests: int) -> torch.Tensor:
    """(B,) event counts -> (B,) long K_u = max(1, min(K, floor(log2 n)))."""
    n = lengths.to(torch.float64).clamp(min=1.0)
    return torch.floor(torch.log2(n)).to(torch.long).clamp(min=1, max=max_interests)


def active_interests(lengths: torch.Tensor, max_interests: int) -> torch.Tensor:
    """(B,) event counts -> (B, K) bool: interest k is active when k < K_u."""
    k = torch.arange(max_interests, device=lengths.device)
    return k[None, :] < interest_count(lengths, max_interests)[:, None]


def squash(h: torch.Tensor) -> torch.Tensor:
    """Eq. 8 on the last axis: (..., d) -> (..., d) with norm ||h||² / (1 + ||h||²) < 1. The epsilon only
    guards the zero vector (an empty history) against 0/0 and an infinite gradient."""
    squared = (h * h).sum(dim=-1, keepdim=True)
    return h * torch.sqrt(squared + _EPSILON) / (1.0 + squared)


class CapsuleRouting(nn.Module):
    """B2I dynamic routing (module docstring). forward(events (B, T, d), weights (B, T), active (B, K) bool) ->
    (interests s (B, K, d), coupling c (B, T, K)); inactive interests come out as zero vectors."""

    def __init__(self, width: int, max_interests: int, iterations: int = ROUTING_ITERATIONS):
        super().__init__()
        if max_interests < 1 or iterations < 1:
            raise ValueError("capsule routing needs at least one interest and one iteration")
        self.max_interests = max_interests
        self.iterations = iterations
        # W_k, stored (K, d_out, d_in); glorot-like scale so û has the magnitude of e.
        self.weight = nn.Parameter(torch.randn(max_interests, width, width) / math.sqrt(width))

    def forward(
        self, events: torch.Tensor, weights: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        predictions = torch.einsum("kcd,btd->btkc", self.weight, events)  # û (B, T, K, d)
        weighted = predictions * weights[..., None, None]
        logits = predictions.new_zeros(predictions.shape[:3])  # b (B, T, K)
        blocked = ~active[:, None, :]
        for iteration in range(self.iterations):
            coupling = torch.softmax(logits.masked_fill(blocked, float("-inf")), dim=-1)
            interests = squash(torch.einsum("btk,btkc->bkc", coupling, weighted))
            if iteration + 1 < self.iterations:
                logits = logits + torch.einsum("btkc,bkc->btk", predictions.detach(), interests.detach())
        return interests * active[..., None].to(interests.dtype), coupling


def max_interest_scores(scores: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """UiM eq. 1: (B, K, J) interest-item scores, (B, K) active -> (B, J) best active interest per item."""
    return scores.masked_fill(~active[..., None], float("-inf")).max(dim=1).values


def label_aware_scores(
    scores: torch.Tensor, active: torch.Tensor, power: float = ATTENTION_POWER
) -> torch.Tensor:
    """MIND's label-aware attention: (B, K, J), (B, K) -> (B, J) Σ_k softmax_k(p·score) score over active k."""
    blocked = ~active[..., None]
    attention = torch.softmax((power * scores).masked_fill(blocked, float("-inf")), dim=1)
    return (attention * scores.masked_fill(blocked, 0.0)).sum(dim=1)
