"""The Transformer model's own behaviour; the registry contract (shapes, padding, learning, seeds, state dict) is
covered by test_models.py, which picks it up from the registry."""

from __future__ import annotations

import pytest
import torch

from mmrec_ray.models._event_embedding import MAX_RANK, recency_rank
from mmrec_ray.models.transformer import TransformerNetwork, attention_heads

D, V, UNITS, J = 6, 7, 16, 5


def network(seed: int = 0) -> TransformerNetwork:
    torch.manual_seed(seed)
    return TransformerNetwork(D, V, UNITS, J, dropout=0.0).eval()


def inputs(batch: int = 4, steps: int = 5, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    is_conversation = (torch.rand(batch, steps, generator=generator) < 0.5).float()
    conversation = torch.randn(batch, steps, D, generator=generator) * is_conversation[..., None]
    session = (torch.rand(batch, steps, V, generator=generator) < 0.3).float() * (
        1 - is_conversation[..., None]
    )
    return is_conversation, conversation, session


def test_heads_divide_the_width():
    assert [attention_heads(u) for u in (64, 128, 256, 8, 6, 7)] == [4, 4, 4, 4, 2, 1]


def test_recency_rank_counts_back_from_the_last_event_and_is_capped():
    ranks = recency_rank(torch.tensor([3, 1, 0, MAX_RANK + 5]), MAX_RANK + 5)
    assert ranks[0, :3].tolist() == [2, 1, 0] and ranks[1, 0] == 0
    assert ranks[3, 0] == MAX_RANK - 1 and ranks[3, -1] == 0


def test_padded_steps_do_not_reach_the_output_whatever_they_hold():
    model = network()
    is_conversation, conversation, session = inputs()
    lengths = torch.tensor([5, 3, 1, 2])
    clean = model(is_conversation, conversation, session, lengths)
    junk_conversation, junk_session = conversation.clone(), session.clone()
    for row, n in enumerate(lengths.tolist()):
        junk_conversation[row, n:] = 7.0
        junk_session[row, n:] = 1.0
    with torch.no_grad():
        junk = model(is_conversation, junk_conversation, junk_session, lengths)
    torch.testing.assert_close(junk, clean)


def test_an_empty_history_still_gets_finite_scores():
    model = network()
    is_conversation, conversation, session = inputs(batch=2)
    out = model(is_conversation * 0, conversation * 0, session * 0, torch.tensor([0, 0]))
    assert torch.isfinite(out).all()


def test_event_order_changes_the_output():
    """Recency embeddings make the encoder order-aware (a bag of events would not be)."""
    model = network()
    is_conversation, conversation, session = inputs(batch=1, steps=4)
    lengths = torch.tensor([4])
    reverse = torch.arange(3, -1, -1)
    forward = model(is_conversation, conversation, session, lengths)
    backward = model(is_conversation[:, reverse], conversation[:, reverse], session[:, reverse], lengths)
    assert not torch.allclose(forward, backward)


@pytest.mark.parametrize("units", [64, 256])
def test_size_stays_comparable_with_the_latent_feature_gru(units):
    from mmrec_ray.models.latent_feature import LatentFeatureNetwork

    def count(module):
        return sum(p.numel() for p in module.parameters())

    transformer = TransformerNetwork(768, 55, units, 24, dropout=0.3)
    gru = LatentFeatureNetwork(768, 55, units, 24, dropout=0.3)
    assert count(transformer) < 2.5 * count(gru)
