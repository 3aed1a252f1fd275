"""The reference code's behaviour where this project follows it (fidelity issue): Keras initialisation, Latent
Feature's loss weights / summed half-width projections / padding, the joint networks' layer list, Neutral
Imputation's per-column mode, Knowledge Distillation's 11 % validation split."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mmrec_ray.config import FidelityConfig, LatentFeatureFidelity, TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import SUBSET_CONVERSATIONS_ONLY, SUBSET_INTERSECTION, SUBSET_SESSIONS_ONLY
from mmrec_ray.models.latent_feature import LatentFeatureNetwork, LatentFeatureRecommender, pe_type_weights
from mmrec_ray.models.layers import JointNetwork, MaskedGRU
from mmrec_ray.models.neutral_imputation import NeutralImputationNetwork, column_mode_session
from mmrec_ray.training.initialisation import keras_initialise_
from mmrec_ray.training.loop import train
from tests.models.conftest import make_prepared, small_params


def test_latent_feature_weights_equal_the_reference_formula_on_a_hand_made_split():
    # 10 training PEs: 2 conversations-only, 5 sessions-only, 3 intersection; 2 test PEs that must not count.
    subset = np.array([1, 1, 2, 2, 2, 2, 2, 3, 3, 3, 1, 1], dtype=np.int8)
    train = np.arange(10)
    weights = pe_type_weights(subset, train)
    p_conv, p_sess, p_inter = 0.2, 0.5, 0.3
    assert weights[SUBSET_CONVERSATIONS_ONLY] == 2.0
    assert weights[SUBSET_SESSIONS_ONLY] == 1.0
    # (2 * 0.2 + 0.5) / (1 - 0.3) = 0.9 / 0.7
    assert weights[SUBSET_INTERSECTION] == pytest.approx((2 * p_conv + p_sess) / (1 - p_inter))
    assert weights[SUBSET_INTERSECTION] == pytest.approx(9 / 7)


def test_latent_feature_loss_is_weighted_in_training_and_validation():
    data = make_prepared()
    store = FeatureStore(data, "cpu")
    training = TrainingConfig(max_epochs=1, device="cpu", num_threads=1)
    model = LatentFeatureRecommender(small_params("latent_feature"), training, seed=0)
    model.prepare(store, data.train_indices("all"))
    model.network = model.build_network(store).eval()  # no dropout noise between the two evaluations
    batch = next(store.iterate(np.arange(40), 40))
    weighted = model.loss(model.network, batch)
    unweighted = dataclasses.replace(
        training, fidelity=FidelityConfig(latent_feature=LatentFeatureFidelity(sample_weights="none"))
    )
    plain = LatentFeatureRecommender(small_params("latent_feature"), unweighted, seed=0)
    plain.prepare(store, data.train_indices("all"))
    assert plain.pe_weights is None
    per_pe = torch.stack([plain.loss(model.network, b) for b in store.iterate(np.arange(40), 1)])
    expected = (model.pe_weights[:40] * per_pe).mean()
    torch.testing.assert_close(weighted, expected)


def test_latent_feature_projections_are_half_width_and_summed_as_the_reference():
    network = LatentFeatureNetwork(embedding_dim=6, vocab_size=7, units=9, num_items=5, dropout=0.0)
    assert network.conversation_projection.linear.out_features == round(9 / 2)
    assert network.encoder.input_size == round(9 / 2) + 1
    with torch.no_grad():
        network.session_projection.linear.bias.fill_(0.7)
    conversation = torch.randn(1, 2, 6)
    steps = {}

    def capture(module, args):
        steps["x"] = args[0]

    network.encoder.register_forward_pre_hook(capture)
    network(torch.tensor([[1.0, 0.0]]), conversation * torch.tensor([1.0, 0.0])[None, :, None], torch.zeros(1, 2, 7),
            torch.tensor([2]))  # fmt: skip
    # The absent session input still contributes tanh(its bias) at the conversation step.
    expected = torch.tanh(network.conversation_projection.linear(conversation[0, 0])) + torch.tanh(
        torch.tensor(0.7)
    )
    torch.testing.assert_close(steps["x"][0, 0, :-1], expected)
    selected = LatentFeatureNetwork(6, 7, units=9, num_items=5, dropout=0.0, projection="select")
    assert selected.encoder.input_size == 10


def test_latent_feature_reference_padding_reads_padded_steps_once_biases_move():
    torch.manual_seed(0)
    masked = LatentFeatureNetwork(6, 7, units=8, num_items=5, dropout=0.0).eval()
    reference = LatentFeatureNetwork(6, 7, units=8, num_items=5, dropout=0.0, padding="reference").eval()
    reference.load_state_dict(masked.state_dict())
    is_conversation = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    conversation = torch.zeros(1, 4, 6)
    conversation[0, 0] = torch.randn(6)
    session = torch.zeros(1, 4, 7)
    session[0, 1] = (torch.rand(7) > 0.5).float()
    lengths = torch.tensor([2])
    with torch.no_grad():  # zero biases: padded steps are all zero, Keras masks them, both agree
        for module in (masked, reference):
            keras_initialise_(module)
        reference.load_state_dict(masked.state_dict())
        torch.testing.assert_close(
            reference(is_conversation, conversation, session, lengths),
            masked(is_conversation, conversation, session, lengths),
        )
        masked.session_projection.linear.bias.fill_(0.5)
        reference.session_projection.linear.bias.fill_(0.5)
        # Non-zero bias: the reference reads the two padded steps first (front padding), so scores change.
        padded = reference(is_conversation, conversation, session, lengths)
        assert not torch.allclose(padded, masked(is_conversation, conversation, session, lengths))
        # ... and equal what a GRU over [pad, pad, real, real] in that order gives.
        steps = torch.cat([reference.session_projection(torch.zeros(1, 4, 7)) * 0 + torch.tanh(torch.tensor(0.5)),
                           torch.zeros(1, 4, 1)], dim=-1)  # fmt: skip
        steps = steps + torch.cat(
            [reference.conversation_projection(torch.zeros(1, 4, 6)), torch.zeros(1, 4, 1)], -1
        )
        real = torch.cat(
            [
                reference.conversation_projection(conversation) + reference.session_projection(session),
                is_conversation[..., None],
            ],
            dim=-1,
        )
        sequence = torch.cat([steps[:, :2], real[:, :2]], dim=1)
        expected = reference.head(reference.encoder(sequence, torch.tensor([4])))
        torch.testing.assert_close(padded, expected)


def _layer_list(network: nn.Module) -> list[str]:
    return [type(m).__name__ for m in network.head.modules() if not list(m.children())]


def test_joint_network_layers_match_the_reference_scripts():
    # model_knowledge_distillation.py / model_neutral_imputation.py / generative_imputation_step_3.py:
    # concatenate -> Dense(units, relu) -> Dropout -> Dense(units, relu) -> Dense(J).
    network = JointNetwork(conversation_dim=6, session_dim=7, units=8, num_items=5, dropout=0.3)
    assert isinstance(network.session_encoder, MaskedGRU) and network.session_encoder.hidden_size == 8
    assert network.conversation_encoder.linear.out_features == 8
    assert _layer_list(network) == ["Linear", "ReLU", "Dropout", "Linear", "Linear"]
    linears = [m for m in network.head.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 8), (8, 8), (8, 5)]
    single = JointNetwork(6, 7, 8, 5, 0.3, head="single")
    assert _layer_list(single) == ["Dropout", "Linear", "Linear"]
    assert isinstance(NeutralImputationNetwork(6, 7, 8, 5, 0.3).joint.head, nn.Sequential)


def test_keras_initialisation_glorot_orthogonal_zero_bias():
    torch.manual_seed(0)
    network = JointNetwork(conversation_dim=30, session_dim=20, units=16, num_items=5, dropout=0.1)
    keras_initialise_(network)
    gru = network.session_encoder.gru
    limit = (6 / (20 + 3 * 16)) ** 0.5  # glorot over the stacked (in, 3H) kernel
    largest = float(gru.weight_ih_l0.detach().abs().max())
    assert 0.8 * limit < largest <= limit
    torch.testing.assert_close(gru.weight_hh_l0.T @ gru.weight_hh_l0, torch.eye(16), atol=1e-5, rtol=0)
    for name, parameter in network.named_parameters():
        if name.endswith("bias") or "bias_" in name:
            assert torch.count_nonzero(parameter) == 0, name


def test_training_loop_initialises_the_keras_way_unless_switched_off():
    data = make_prepared()
    store = FeatureStore(data, "cpu")
    seen = {}

    def loss_fn(module, batch):
        seen.setdefault("bias", module.bias.detach().clone())
        return module(batch.pe_conversation).pow(2).mean()

    for scheme in ("keras", "torch"):
        seen.clear()
        training = TrainingConfig(max_epochs=1, device="cpu", fidelity=FidelityConfig(init=scheme))
        linear = nn.Linear(data.embedding_dim, 3)
        outcome = train(linear, loss_fn, store, np.arange(50), np.arange(50, 60), 64, training, seed=0)
        assert outcome.best_epoch == 1
        assert bool((seen["bias"] == 0).all()) == (scheme == "keras")


def test_neutral_session_is_the_per_column_mode_of_session_rows():
    data = make_prepared()
    tags = np.zeros_like(data.session_tags)
    pes = np.arange(60)
    rows = data.event_row[pes][data.event_kind[pes] == 2]  # one row per (PE, session event)
    tags[rows[: len(rows) // 2 + 1], 3] = 1  # tag 3 on in just over half of the rows: mode 1
    tags[rows[: len(rows) // 2 - 1], 4] = 1  # tag 4 on in under half: mode 0
    data = dataclasses.replace(data, session_tags=tags)
    mode = column_mode_session(FeatureStore(data, "cpu"), pes)
    expected = np.zeros(data.vocab_size, dtype=np.float32)
    expected[3] = 1
    np.testing.assert_array_equal(mode, expected)


def test_all_zero_neutral_session_is_masked_like_keras():
    torch.manual_seed(0)
    network = NeutralImputationNetwork(6, 7, 8, 5, 0.0).eval()
    conversation = torch.randn(1, 6)
    sessions = torch.zeros(1, 3, 7)
    # Neutral session all zeros (the usual column mode): the GRU branch keeps its zero state.
    out = network(conversation, torch.tensor([True]), sessions, torch.tensor([0]))
    torch.testing.assert_close(out, network.joint(conversation, sessions, torch.tensor([0])))
    assert not torch.allclose(out, network.joint(conversation, sessions, torch.tensor([1])))


def test_knowledge_distillation_student_validates_on_the_last_11_percent():
    from mmrec_ray.models import neural

    data = make_prepared(num_pes=400)
    calls = []
    original = data.split_validation

    def spy(indices, fraction=0.1):
        calls.append(fraction)
        return original(indices, fraction)

    data = dataclasses.replace(data)
    object.__setattr__(data, "split_validation", spy)
    from mmrec_ray.training.runner import fit_models

    training = TrainingConfig(max_epochs=1, device="cpu", num_threads=1)
    params = {n: small_params(n) for n in ("conversation", "session", "knowledge_distillation")}
    fit_models(data, ["knowledge_distillation"], [0], params, training, device="cpu")
    assert calls[-1] == pytest.approx(0.11)  # the student (fitted last)
    assert 0.1 in calls  # the teachers keep the 10 % split
    assert neural.fit_network  # the split goes through the shared helper
