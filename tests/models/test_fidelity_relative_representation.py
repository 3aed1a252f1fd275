"""Relative Representation against the authors' reference scripts (model_relative_representation_step_1..3.py):
encoder heads, the anchor quota rule, the anchor pool, raw vs standardised similarities, and the split into two
single-stage encoder components."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import mmrec_ray.models.relative_representation as rr
from mmrec_ray.config import ModelParams, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_PAD, EVENT_SESSION
from mmrec_ray.models import registry
from mmrec_ray.models._anchors import reference_classes, reference_quotas, select_anchors
from mmrec_ray.models._single_event_encoder import SingleEventEncoder
from mmrec_ray.models.layers import OutputHead
from mmrec_ray.models.relative_representation_conversation_encoder import CONVERSATION_ENCODER
from mmrec_ray.models.relative_representation_session_encoder import SESSION_ENCODER
from mmrec_ray.training.runner import fit_one, resolve_params

C, S, P = EVENT_CONVERSATION, EVENT_SESSION, EVENT_PAD
PARAMS = ModelParams(batch_size=32, units=8, dropout=0.3, num_anchors=6)


def with_switches(training: TrainingConfig, **switches) -> TrainingConfig:
    fidelity = training.fidelity
    return dataclasses.replace(
        training,
        fidelity=dataclasses.replace(
            fidelity,
            relative_representation=dataclasses.replace(fidelity.relative_representation, **switches),
        ),
    )


def fit_encoders(store, training, params=PARAMS):
    return {
        name: fit_one(name, 0, store, params, training)[0] for name in (CONVERSATION_ENCODER, SESSION_ENCODER)
    }


# ------------------------------------------------------------------------------------------ anchor quotas
def test_reference_quotas_on_a_hand_made_purchase_table():
    """step_3 lines 43-45: share = bought/N normalised to sum 1; quota = max(1, round(n·share)), half to even."""
    # Three pool PEs: two bought item 0 only, one bought items 0 and 1; nobody bought item 2.
    table = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 0]])
    bought, n_pes = table.sum(axis=0), len(table)  # (3, 1, 0): shares 0.75, 0.25, 0
    np.testing.assert_array_equal(reference_quotas(bought, n_pes, 10), [8, 2, 0])  # 7.5 -> 8, 2.5 -> 2
    np.testing.assert_array_equal(reference_quotas(bought, n_pes, 2), [2, 1, 0])  # 0.5 -> 0, lifted to 1
    np.testing.assert_array_equal(reference_quotas(bought, n_pes, 125), [94, 31, 0])  # 93.75, 31.25
    # The reference's order of operations (÷N, then ÷sum) makes 6 · 0.3/1.2 = 1.4999999999999996 -> 1 (pandas
    # gives the same); computed as 6 · 3/12 it would be 1.5 -> 2.
    np.testing.assert_array_equal(reference_quotas(np.array([8, 3, 1]), 10, 6), [4, 1, 1])


def test_reference_quotas_give_124_anchors_for_125_on_the_release_counts():
    # Training PEs per item (item ids 1..24) of the released dataset, and the quotas its script computes.
    bought = [3480, 2275, 1878, 9347, 1762, 3561, 7654, 7490, 574, 517, 925, 1748]
    bought += [4931, 1634, 1296, 5341, 4515, 11098, 1518, 518, 2842, 4654, 943, 3880]
    expected = [5, 3, 3, 14, 3, 5, 11, 11, 1, 1, 1, 3, 7, 2, 2, 8, 7, 16, 2, 1, 4, 7, 1, 6]
    quotas = reference_quotas(np.array(bought), 56160, 125)
    np.testing.assert_array_equal(quotas, expected)
    assert quotas.sum() == 124


def test_reference_class_is_the_rarest_bought_item_with_the_reference_tie_order():
    quotas = np.array([5, 2, 2, 0])
    bought = np.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
    # Item ids 9, 10, 11, 12: as strings "10" < "11" < "12" < "9", so the tie of items 1 and 2 goes to item 1.
    np.testing.assert_array_equal(reference_classes(bought, quotas, np.array([9, 10, 11, 12])), [1, 0, 1, -1])
    # Ids 30, 20, 10, 40: "10" (item 2) comes before "20" (item 1).
    np.testing.assert_array_equal(
        reference_classes(bought, quotas, np.array([30, 20, 10, 40])), [1, 0, 2, -1]
    )
    # A quota of 99 or more is still a bought item's quota (the reference's 99 placeholder would win here).
    np.testing.assert_array_equal(
        reference_classes(np.array([[1, 0]]), np.array([120, 1]), np.array([1, 2])), [0]
    )


def hand_made_pool():
    """Ten PEs. Candidates (one conversation + one session): PEs 0-6. PEs 7-9 are not (two conversations; one
    session only; three events). Purchases: item 0 by PEs 0-4, 7, 8, 9; item 1 by PEs 3, 5, 6; item 2 by PE 9."""
    kinds = [[C, S, P], [S, C, P], [C, S, P], [C, S, P], [S, C, P], [C, S, P], [S, C, P]]
    kinds += [[C, C, P], [S, P, P], [C, S, S]]
    targets = np.zeros((10, 3), dtype=np.uint8)
    targets[[0, 1, 2, 3, 4, 7, 8, 9], 0] = 1
    targets[[3, 5, 6], 1] = 1
    targets[9, 2] = 1
    return SimpleNamespace(
        event_kind=np.array(kinds, dtype=np.int8), targets=targets, item_ids=np.array([101, 102, 103])
    )


def test_reference_anchor_selection_on_a_hand_made_pool():
    data = hand_made_pool()
    # bought (8, 3, 1) of N=10, n=5: 3.33 -> 3, 1.25 -> 1, 0.42 -> 0 lifted to 1; quotas total 5.
    with pytest.warns(UserWarning, match="fewer candidates than their quota"):
        anchors = select_anchors(data, np.arange(10), 5, seed=0)
    np.testing.assert_array_equal(anchors.quotas, [3, 1, 1])
    # Item 2's only buyer (PE 9) is no candidate: the reference's pandas sample would raise; here it is reported.
    assert anchors.shortfall == 1 and len(anchors.pes) == 4 == len(set(anchors.pes.tolist()))
    per_class = {j: set(anchors.pes[anchors.classes == j].tolist()) for j in (0, 1, 2)}
    # PE 3 bought items 0 and 1: its class is item 1 (quota 1 < 3), so it is never drawn for item 0.
    assert len(per_class[0]) == 3 and per_class[0] <= {0, 1, 2, 4}
    assert len(per_class[1]) == 1 and per_class[1] <= {3, 5, 6}
    assert per_class[2] == set()


def test_reference_anchor_selection_is_seeded():
    data = hand_made_pool()
    with pytest.warns(UserWarning):
        draws = {tuple(select_anchors(data, np.arange(10), 5, seed=seed).pes.tolist()) for seed in range(20)}
    with pytest.warns(UserWarning):
        first = select_anchors(data, np.arange(10), 5, seed=3).pes
        second = select_anchors(data, np.arange(10), 5, seed=3).pes
    np.testing.assert_array_equal(first, second)
    assert len(draws) > 1, "different seeds draw different anchors"


def test_equal_quota_switch_keeps_exactly_n_anchors():
    anchors = select_anchors(hand_made_pool(), np.arange(10), 6, seed=0, quotas="equal")
    assert len(anchors.pes) == 6 and anchors.shortfall == 0


# ------------------------------------------------------------------------------------------ encoders
def test_encoder_components_are_single_stage_with_the_reference_defaults():
    for name, expected in (
        (CONVERSATION_ENCODER, ModelParams(batch_size=128, units=256, dropout=0.4)),
        (SESSION_ENCODER, ModelParams(batch_size=256, units=256, dropout=0.2)),
    ):
        cls = registry.get(name)
        assert not cls.reported and cls.depends_on == ()
        assert not getattr(cls, "preliminary_stages", ())
        params = resolve_params(name, None)
        assert (params.batch_size, params.units, params.dropout) == (
            expected.batch_size,
            expected.units,
            expected.dropout,
        )
    assert registry.get("relative_representation").depends_on == (CONVERSATION_ENCODER, SESSION_ENCODER)
    with pytest.raises(KeyError):
        registry.get("relative_representation.encoders")


def test_reference_encoder_head_is_tanh_dropout_relu_output():
    torch.manual_seed(0)
    encoder = SingleEventEncoder(in_features=5, units=4, num_items=3, dropout=0.4, head="reference")
    assert isinstance(encoder.output, OutputHead) and encoder.output.dropout.p == 0.4
    inputs = torch.randn(7, 5)
    encoder.eval()
    latent = torch.tanh(encoder.project.linear(inputs))
    torch.testing.assert_close(encoder.latent(inputs), latent)
    head = encoder.output
    torch.testing.assert_close(encoder(inputs), head.output(torch.relu(head.hidden(latent))))
    encoder.train()  # dropout acts between the latent and the ReLU layer
    assert not torch.allclose(encoder(inputs), encoder(inputs))

    linear = SingleEventEncoder(in_features=5, units=4, num_items=3, dropout=0.4, head="linear").eval()
    assert isinstance(linear.output, nn.Linear)
    torch.testing.assert_close(linear(inputs), linear.output(linear.latent(inputs)))


@pytest.mark.parametrize("head", ["reference", "linear"])
def test_encoder_head_switch_reaches_the_component_and_its_checkpoint(tiny_data, fast_training, head):
    store = FeatureStore(tiny_data, "cpu")
    training = with_switches(fast_training, encoder_head=head)
    encoder, result = fit_one(CONVERSATION_ENCODER, 0, store, PARAMS, training)
    assert result.extra["head"] == head
    assert isinstance(encoder.encoder.output, OutputHead if head == "reference" else nn.Linear)
    # The checkpoint keeps its own head whatever the switch says when it is loaded.
    other = with_switches(fast_training, encoder_head="linear" if head == "reference" else "reference")
    clone = type(encoder)(PARAMS, other, 0)
    clone.load_state_dict(encoder.state_dict(), store)
    rows = store.conversation_table[:-1]
    torch.testing.assert_close(clone.latent(rows), encoder.latent(rows))


# ------------------------------------------------------------------------------------------ joint model
@pytest.mark.parametrize("anchor_pool", ["training", "fitting_part"])
def test_anchor_pool_switch(tiny_data, fast_training, monkeypatch, anchor_pool):
    seen = {}

    def spy(data, pool, num_anchors, seed, quotas):
        seen["pool"], seen["quotas"] = np.asarray(pool), quotas
        return select_anchors(data, pool, num_anchors, seed, quotas=quotas)

    monkeypatch.setattr(rr, "select_anchors", spy)
    store = FeatureStore(tiny_data, "cpu")
    training = with_switches(fast_training, anchor_pool=anchor_pool)
    fit_one("relative_representation", 0, store, PARAMS, training, fit_encoders(store, training))
    train = tiny_data.train_indices("all")
    fit_part, validation_part = tiny_data.split_validation(train, training.validation_fraction)
    expected = train if anchor_pool == "training" else fit_part
    np.testing.assert_array_equal(np.sort(seen["pool"]), np.sort(expected))
    assert seen["quotas"] == "reference"
    assert np.isin(validation_part, seen["pool"]).all() == (anchor_pool == "training")


def test_raw_similarities_are_the_default_gru_input_and_survive_a_checkpoint(tiny_data, fast_training):
    store = FeatureStore(tiny_data, "cpu")
    model, result = fit_one(
        "relative_representation", 0, store, PARAMS, fast_training, fit_encoders(store, fast_training)
    )
    assert model.similarity == "raw" and model.scaling == {}
    conversation, session = model.relative_tables(store)
    torch.testing.assert_close(conversation, model.raw_relative_table(store, "conversation"))
    torch.testing.assert_close(session, model.raw_relative_table(store, "session"))
    stats = result.extra["similarity"]
    assert set(stats) == {"conversation", "session"}
    assert all(-1 <= s["mean"] <= 1 and s["std"] >= 0 and s["per_anchor_std"] >= 0 for s in stats.values())
    # A checkpoint predicts as fitted even when loaded under the other similarity switch.
    clone = type(model)(model.params, with_switches(fast_training, similarity="standardised"), 0)
    clone.load_state_dict(model.state_dict(), store)
    everything = np.arange(tiny_data.num_pes)
    np.testing.assert_allclose(clone.predict(store, everything), model.predict(store, everything), atol=1e-6)
