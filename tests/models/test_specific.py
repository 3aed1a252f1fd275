"""Behaviour specific to one model: Popular's counts, Late Fusion's routing, Neutral Imputation's values."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import EVENT_SESSION
from mmrec_ray.models import registry
from mmrec_ray.models.neutral_imputation import NeutralImputationNetwork, neutral_values
from mmrec_ray.training.runner import fit_models
from tests.models.conftest import make_prepared, small_params

TRAINING = TrainingConfig(max_epochs=2, device="cpu", num_threads=1)


def test_popular_counts_training_purchases_only():
    data = make_prepared()
    store = FeatureStore(data, "cpu")
    popular = registry.get("popular")(ModelParams(), TRAINING, 0)
    popular.fit(store, {})
    expected = data.targets[~data.is_test].sum(axis=0)
    scores = popular.predict(store, np.arange(data.num_pes))
    assert (scores == expected).all()
    # a test PE's purchases must not leak into the counts
    changed = dataclasses.replace(data, targets=data.targets.copy())
    changed.targets[data.test_indices()] = 1
    again = registry.get("popular")(ModelParams(), TRAINING, 0)
    again.fit(FeatureStore(changed, "cpu"), {})
    assert (again.predict(store, np.arange(3)) == expected).all()


def test_late_fusion_routes_by_pe_type():
    data = make_prepared()
    params = {n: small_params(n) for n in ("conversation", "session")}
    fitted = fit_models(data, ["late_fusion"], [3], params, TRAINING, device="cpu")
    fusion, conversation, session = (fitted[(n, 3)][0] for n in ("late_fusion", "conversation", "session"))
    assert fusion.parts["conversation"] is conversation and fusion.parts["session"] is session
    store = FeatureStore(data, "cpu")
    everyone = np.arange(data.num_pes)
    fused, by_conversation, by_session = (m.predict(store, everyone) for m in (fusion, conversation, session))
    only_conversation = data.has_conversation & ~data.has_session
    only_session = data.has_session & ~data.has_conversation
    both = data.has_conversation & data.has_session
    assert only_conversation.any() and only_session.any() and both.any()
    np.testing.assert_array_equal(fused[only_conversation], by_conversation[only_conversation])
    np.testing.assert_array_equal(fused[only_session], by_session[only_session])
    np.testing.assert_allclose(fused[both], (by_conversation[both] + by_session[both]) / 2, rtol=1e-6)
    assert not np.isnan(fused).any()


def test_neutral_values_are_the_mean_embedding_and_the_most_frequent_session():
    data = make_prepared()
    tags = data.session_tags.copy()
    # make one tag vector clearly the most frequent among the sessions of the first 50 PEs
    favourite = np.array([1, 0, 1, 0, 0, 1, 0], dtype=np.uint8)
    rows = data.event_row[:50][data.event_kind[:50] == EVENT_SESSION]
    tags[rows[: len(rows) // 2]] = favourite
    data = dataclasses.replace(data, session_tags=tags)
    store = FeatureStore(data, "cpu")
    indices = np.arange(50)
    conversation, session = neutral_values(store, indices, "most_frequent_session")
    with_conversation = indices[data.has_conversation[:50]]
    np.testing.assert_allclose(
        conversation, data.pe_conversation_embedding[with_conversation].mean(0), rtol=1e-5
    )
    np.testing.assert_array_equal(session, favourite)


def test_neutral_imputation_fills_missing_modalities_with_the_neutral_values():
    torch.manual_seed(0)
    network = NeutralImputationNetwork(
        embedding_dim=3, vocab_size=4, units=5, num_items=2, dropout=0.0
    ).eval()
    network.neutral_conversation.copy_(torch.tensor([0.5, -1.0, 2.0]))
    network.neutral_session.copy_(torch.tensor([1.0, 0.0, 1.0, 0.0]))
    conversation = torch.randn(2, 3)
    sessions = torch.randn(2, 3, 4)
    missing = network(conversation, torch.tensor([False, False]), sessions, torch.tensor([0, 0]))
    explicit_sessions = torch.zeros(2, 3, 4)
    explicit_sessions[:, 0] = network.neutral_session
    explicit = network.joint(
        network.neutral_conversation.expand(2, 3), explicit_sessions, torch.tensor([1, 1])
    )
    torch.testing.assert_close(missing, explicit)
    present = network(conversation, torch.tensor([True, True]), sessions, torch.tensor([3, 2]))
    torch.testing.assert_close(present, network.joint(conversation, sessions, torch.tensor([3, 2])))


def test_neutral_imputation_statistics_come_from_training_pes_never_test():
    data = make_prepared()
    fitted = fit_models(
        data,
        ["neutral_imputation"],
        [0],
        {"neutral_imputation": small_params("neutral_imputation")},
        TRAINING,
        device="cpu",
    )
    model = fitted[("neutral_imputation", 0)][0]
    # The reference fits its imputers on the whole training split (validation part included), never on test.
    expected, _ = neutral_values(FeatureStore(data, "cpu"), data.train_indices("all"))
    np.testing.assert_allclose(model.network.neutral_conversation.numpy(), expected, rtol=1e-6)
    with_test, _ = neutral_values(FeatureStore(data, "cpu"), np.arange(data.num_pes))
    assert not np.allclose(with_test, expected)
