"""UiM (Xu et al., "User Plays a Role: User-insight Multi-modal Recommendation"; beyond the paper, issue #16):
its enriched user profile and multi-interest extraction carried over to users whose history is web sessions and
call-centre conversations. Its third idea, simulated-user feedback, re-ranks this model's output
(``uim_simulators``: ``uim_learned_feedback``, ``uim_llm_feedback``).

Shapes: B PEs, T events, D sentence-embedding width, V vocabulary, P profile width (= J + 7), d = units, K
interests (``MAX_INTERESTS``), J items.

1. Events -> one latent space (``_event_embedding``; Latent Feature's per-modality projection, plus modality
   and recency embeddings): e_i (B, T, d).
2. Enriched profile (``_user_profile``): p_u (B, P) — earlier purchases of the same user (training labels only),
   channel mix, number and recency of events; e_u = ReLU(W_u p_u + b_u) (B, d).
   Profile-guided attention (UiM eq. 4): a_i = σ(w_2ᵀ ReLU(W_1 [e_i ; e_u] + b_1) + b_2) (B, T), 0 at padding.
3. Multi-interest extraction (``_capsules``, UiM eqs. 5-8 with MIND's B2I routing): K_u = max(1, min(K,
   floor(log2 n))) interests s_k (B, K, d) from the events weighted by a_i.
   Interest-profile fusion (UiM eqs. 9-11): x_k = σ(W_4 ReLU(W_3 [s_k ; e_u] + b_3) + b_4) (B, K, d), then
   o_k = MLP([s_k ; x_k ⊙ e_u]) with MLP = Dropout -> Dense(units, ReLU) -> Linear(d) (B, K, d).
4. Items: E (J, d), b (J); interest-item scores o_k · E_j + b_j (B, K, J). Prediction takes the best active
   interest (UiM eq. 1); training reads them through label-aware attention (MIND) -> logits (B, J) -> the
   project's eq. (6) BCE over all J items (UiM's in-batch negative sampling is for large catalogues; here every
   one of the 24 items is scored).

Switches, as registry variants (class attributes) so that Table 3 can report the ablation:
``uim`` (profile + K = 3 interests), ``uim_no_profile`` (a_i = 1, o_k = MLP(s_k): no profile anywhere),
``uim_single_interest`` (K = 1: the profile-weighted events pooled by one capsule).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from mmrec_ray.data.features import Batch, FeatureStore
from mmrec_ray.models._capsules import (
    CapsuleRouting,
    active_interests,
    label_aware_scores,
    max_interest_scores,
)
from mmrec_ray.models._event_embedding import EventEmbedding
from mmrec_ray.models._user_profile import ProfileTables, profile_width
from mmrec_ray.models.neural import NetworkRecommender
from mmrec_ray.models.registry import register
from mmrec_ray.training.losses import multilabel_bce

MAX_INTERESTS = 3  # K: the released histories hold <= 10 events, so log2 caps K_u at 3 anyway


def two_layer_gate(in_features: int, width: int, out_features: int) -> nn.Sequential:
    """σ(W_b ReLU(W_a x + b_a) + b_b) without the σ: UiM's two-layer ReLU-MLPs of eqs. 4 and 9 (logits)."""
    return nn.Sequential(nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, out_features))


class UimNetwork(nn.Module):
    """forward(is_conversation (B, T), conversation (B, T, D), session (B, T, V), lengths (B,), profile (B, P) or
    None) -> (interest-item scores (B, K, J), active interests (B, K) bool). See the module docstring."""

    def __init__(
        self,
        embedding_dim: int,
        vocab_size: int,
        profile_dim: int,
        units: int,
        num_items: int,
        dropout: float,
        use_profile: bool = True,
        max_interests: int = MAX_INTERESTS,
    ):
        super().__init__()
        self.use_profile = use_profile
        self.max_interests = max_interests
        self.events = EventEmbedding(embedding_dim, vocab_size, units)
        if use_profile:
            self.profile = nn.Sequential(nn.Linear(profile_dim, units), nn.ReLU())  # e_u
            self.event_attention = two_layer_gate(2 * units, units, 1)  # eq. 4
            self.interest_gate = two_layer_gate(2 * units, units, units)  # eq. 9
        self.routing = CapsuleRouting(units, max_interests)
        self.interest_head = nn.Sequential(  # h(.) of eq. 11
            nn.Dropout(dropout),
            nn.Linear(2 * units if use_profile else units, units),
            nn.ReLU(),
            nn.Linear(units, units),
        )
        self.items = nn.Linear(units, num_items)  # E (J, d) and b (J,)

    def interests(
        self,
        is_conversation: torch.Tensor,
        conversation: torch.Tensor,
        session: torch.Tensor,
        lengths: torch.Tensor,
        profile: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Every intermediate: events e (B, T, d), event weights a (B, T), capsules s (B, K, d), coupling c
        (B, T, K), interests o (B, K, d), active (B, K)."""
        events = self.events(is_conversation, conversation, session, lengths)
        steps = events.shape[1]
        real = (torch.arange(steps, device=lengths.device)[None, :] < lengths.to(torch.long)[:, None]).to(
            events.dtype
        )
        active = active_interests(lengths, self.max_interests)
        if self.use_profile:
            if profile is None:
                raise ValueError("UiM with a profile needs the profile rows")
            user = self.profile(profile)  # e_u (B, d)
            paired = torch.cat([events, user[:, None, :].expand_as(events)], dim=-1)
            weights = torch.sigmoid(self.event_attention(paired)).squeeze(-1) * real
        else:
            user, weights = None, real
        capsules, coupling = self.routing(events, weights, active)
        if user is not None:
            paired = torch.cat([capsules, user[:, None, :].expand_as(capsules)], dim=-1)
            gate = torch.sigmoid(self.interest_gate(paired))  # x_k
            interests = self.interest_head(torch.cat([capsules, gate * user[:, None, :]], dim=-1))
        else:
            interests = self.interest_head(capsules)
        return {
            "events": events,
            "weights": weights,
            "capsules": capsules,
            "coupling": coupling,
            "interests": interests,
            "active": active,
        }

    def forward(
        self,
        is_conversation: torch.Tensor,
        conversation: torch.Tensor,
        session: torch.Tensor,
        lengths: torch.Tensor,
        profile: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        parts = self.interests(is_conversation, conversation, session, lengths, profile)
        return self.items(parts["interests"]), parts["active"]


@register
class UimRecommender(NetworkRecommender):
    name = "uim"
    display_name = "UiM"
    trains_on = "all"
    use_profile: ClassVar[bool] = True
    max_interests: ClassVar[int] = MAX_INTERESTS

    def __init__(self, params, training, seed: int):
        super().__init__(params, training, seed)
        self.profiles = ProfileTables()

    def build_network(self, store: FeatureStore) -> nn.Module:
        return UimNetwork(
            store.embedding_dim,
            store.vocab_size,
            profile_width(store.num_items),
            self.params.units,
            store.num_items,
            self.params.dropout,
            use_profile=self.use_profile,
            max_interests=self.max_interests,
        )

    def inputs(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        profile = self.profiles.rows(batch.store, batch.index) if self.use_profile else None
        return batch.is_conversation, batch.event_conversation, batch.event_session, batch.lengths, profile

    def logits(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        return max_interest_scores(*network(*self.inputs(batch)))

    def loss(self, network: nn.Module, batch: Batch) -> torch.Tensor:
        logits = label_aware_scores(*network(*self.inputs(batch)))
        return multilabel_bce(logits, batch.targets, reduction=self.training.fidelity.loss_reduction)


@register
class UimNoProfileRecommender(UimRecommender):
    name = "uim_no_profile"
    display_name = "UiM w/o profile"
    use_profile = False


@register
class UimSingleInterestRecommender(UimRecommender):
    name = "uim_single_interest"
    display_name = "UiM single interest"
    max_interests = 1
