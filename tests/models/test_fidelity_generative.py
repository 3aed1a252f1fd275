"""Generative Imputation against the reference code (model_generative_imputation_step_1/2/3.py): the two
generators as separate components with their own defaults, the reference architectures and losses, the
``fidelity.generative_imputation`` switches, generation (threshold, empty steps, mean-session fallback) and
padding invariance of the whole pipeline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mmrec_ray.config import FidelityConfig, ModelParams, TrainingConfig, load_config
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.errors import ConfigError
from mmrec_ray.models import registry
from mmrec_ray.models.generative_imputation import ImputedFeatures
from mmrec_ray.models.gi_conversation_generator import CONVERSATION_GENERATOR, SessionsToConversation
from mmrec_ray.models.gi_session_generator import (
    MAX_GENERATED_SESSIONS,
    SESSION_GENERATOR,
    RepeatedConversationGRU,
    TeacherForcedDecoder,
    compact_sessions,
    right_align,
)
from mmrec_ray.training.runner import fit_one, resolve_params
from tests.models.conftest import small_params, with_extra_padding

GENERATORS = (CONVERSATION_GENERATOR, SESSION_GENERATOR)


def training_with(**switches) -> TrainingConfig:
    """Two-epoch CPU training with ``fidelity.generative_imputation`` switches set."""
    fidelity = FidelityConfig()
    fidelity.generative_imputation = dataclasses.replace(fidelity.generative_imputation, **switches)
    return TrainingConfig(max_epochs=2, patience=2, device="cpu", num_threads=1, fidelity=fidelity)


def fit_generators(store, training, params=None):
    """Both generators of seed 0: the joint model's dependencies."""
    params = params or {name: small_params(name) for name in GENERATORS}
    return {name: fit_one(name, 0, store, params[name], training)[0] for name in GENERATORS}


# --------------------------------------------------------------------------------- components and defaults
def test_generators_are_two_single_stage_components_with_the_reference_defaults():
    joint = registry.get("generative_imputation")
    assert joint.depends_on == GENERATORS
    for name in GENERATORS:
        component = registry.get(name)
        assert not component.reported and component.trains_on == "both"
        assert component.depends_on == () and component.preliminary_stages == ()
        assert name not in registry.names() and name in registry.names(include_components=True)
    # What a fit without tuned parameters uses (runner.resolve_params -> default_params): step_1 line 73,
    # step_2 line 75, and Table 2 for the joint model (= step_3 line 137).
    assert resolve_params(CONVERSATION_GENERATOR, None) == ModelParams(batch_size=128, units=64, dropout=0.4)
    assert resolve_params(SESSION_GENERATOR, None) == ModelParams(batch_size=128, units=256, dropout=0.3)
    assert resolve_params("generative_imputation", None) == ModelParams(
        batch_size=128, units=256, dropout=0.2
    )


def test_each_generator_trains_on_its_own_hyperparameters(tiny_data):
    store = FeatureStore(tiny_data, "cpu")
    training = training_with()
    conversation = fit_one(
        CONVERSATION_GENERATOR, 0, store, resolve_params(CONVERSATION_GENERATOR, None), training
    )
    session = fit_one(SESSION_GENERATOR, 0, store, resolve_params(SESSION_GENERATOR, None), training)
    assert conversation[0].network.encoder.hidden_size == 64
    assert conversation[0].network.dropout.p == 0.4
    assert session[0].network.gru.hidden_size == 256 and session[0].network.dropout.p == 0.3
    for _, result in (conversation, session):
        assert len(result.history) == 1 and result.best_epoch >= 1  # one stage each


def test_switches_reach_the_models_from_the_yaml_section(tiny_data):
    cfg = load_config(
        None,
        [
            "fidelity.generative_imputation.conversation_generator=linear",
            "fidelity.generative_imputation.session_generator=decoder",
        ],
    )
    store = FeatureStore(tiny_data, "cpu")
    training = dataclasses.replace(cfg.training, max_epochs=1, device="cpu", num_threads=1)
    conversation, _ = fit_one(
        CONVERSATION_GENERATOR, 0, store, small_params(CONVERSATION_GENERATOR), training
    )
    session, result = fit_one(SESSION_GENERATOR, 0, store, small_params(SESSION_GENERATOR), training)
    assert conversation.network.hidden is None  # GRU -> Dropout -> Linear
    assert isinstance(session.network, TeacherForcedDecoder)
    assert session.num_steps == MAX_GENERATED_SESSIONS and result.extra["design"] == "decoder"
    with pytest.raises(ConfigError, match="conversation_generator"):
        load_config(None, ["fidelity.generative_imputation.conversation_generator=dense"])


# --------------------------------------------------------------------------------- stage (a): step_1
def test_reference_conversation_generator_is_gru_dropout_relu_dense_linear():
    torch.manual_seed(0)
    network = SessionsToConversation(vocab_size=5, embedding_dim=3, units=4, dropout=0.4, design="reference")
    network.eval()
    sequence, lengths = torch.rand(6, 3, 5), torch.tensor([1, 2, 3, 3, 2, 1])
    state = network.encoder(sequence, lengths)
    expected = network.output(torch.relu(network.hidden(state)))
    torch.testing.assert_close(network(sequence, lengths), expected)
    linear = SessionsToConversation(
        vocab_size=5, embedding_dim=3, units=4, dropout=0.4, design="linear"
    ).eval()
    assert linear.hidden is None
    torch.testing.assert_close(linear(sequence, lengths), linear.output(linear.encoder(sequence, lengths)))


def test_conversation_generator_loss_is_keras_mse_mean_over_dimensions(tiny_data):
    store = FeatureStore(tiny_data, "cpu")
    batch = store.batch(tiny_data.train_indices("both")[:16])
    generators = {}
    for reduction in ("mean", "sum"):
        training = training_with()
        training.fidelity = dataclasses.replace(training.fidelity, loss_reduction=reduction)
        generators[reduction], _ = fit_one(
            CONVERSATION_GENERATOR, 0, store, small_params(CONVERSATION_GENERATOR), training
        )
    network = generators["mean"].network.eval()
    squared = (network(batch.session_sequence, batch.session_lengths) - batch.pe_conversation) ** 2
    torch.testing.assert_close(generators["mean"].loss(network, batch), squared.mean())
    torch.testing.assert_close(generators["sum"].loss(network, batch), squared.sum(dim=1).mean())


# --------------------------------------------------------------------------------- stage (b): step_2
def test_right_align_is_the_reference_left_padding_and_ignores_the_padded_width():
    sequence = torch.arange(1, 4, dtype=torch.float32)[None, :, None].repeat(2, 1, 2)  # steps 1, 2, 3
    lengths = torch.tensor([3, 1])
    aligned = right_align(sequence, lengths, steps=4)
    assert aligned[0, :, 0].tolist() == [0, 1, 2, 3]
    assert aligned[1, :, 0].tolist() == [0, 0, 0, 1]
    wider = F.pad(sequence, (0, 0, 0, 5), value=9.0)  # whatever sits in the padded steps is never read
    torch.testing.assert_close(right_align(wider, lengths, steps=4), aligned)
    assert right_align(sequence, lengths, steps=2)[0, :, 0].tolist() == [2, 3]  # the most recent sessions


def test_reference_session_generator_repeats_the_projection_and_averages_bce_over_all_steps():
    torch.manual_seed(0)
    network = RepeatedConversationGRU(embedding_dim=3, vocab_size=5, units=4, dropout=0.3, num_steps=4).eval()
    conversation = torch.randn(6, 3)
    logits = network(conversation)
    assert logits.shape == (6, 4, 5)
    # Every step reads the same projected conversation: the GRU over the repeated vector, no teacher forcing.
    repeated = network.projection(conversation)[:, None].repeat(1, 4, 1)
    torch.testing.assert_close(logits, network.tags(network.gru(repeated)[0]))
    sessions = (torch.rand(6, 2, 5) > 0.5).float()
    lengths = torch.tensor([2, 1, 2, 1, 2, 2])
    target = right_align(sessions, lengths, 4)
    per_element = F.binary_cross_entropy_with_logits(
        logits, target, reduction="none"
    )  # padded steps included
    torch.testing.assert_close(network.loss(conversation, sessions, lengths, "mean"), per_element.mean())
    torch.testing.assert_close(
        network.loss(conversation, sessions, lengths, "sum"), per_element.sum(dim=-1).mean()
    )


def test_dropout_acts_on_each_repeated_step_independently():
    torch.manual_seed(0)
    network = RepeatedConversationGRU(
        embedding_dim=3, vocab_size=5, units=64, dropout=0.5, num_steps=3
    ).train()
    seen = []
    network.gru.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    network(torch.randn(2, 3))
    dropped = seen[0] == 0  # (B, T_gen, H)
    assert not torch.equal(dropped[:, 0], dropped[:, 1])


def test_reference_step_count_is_the_longest_training_sequence_and_padding_invariant(tiny_data):
    training = training_with()
    params = small_params(SESSION_GENERATOR)
    plain, result = fit_one(SESSION_GENERATOR, 0, FeatureStore(tiny_data, "cpu"), params, training)
    both = tiny_data.train_indices("both")
    lengths = (tiny_data.event_kind[both] == 2).sum(axis=1)
    assert plain.num_steps == result.extra["generated_steps"] == lengths.max() < tiny_data.event_kind.shape[1]
    padded = FeatureStore(with_extra_padding(tiny_data, 3), "cpu")
    wide, _ = fit_one(SESSION_GENERATOR, 0, padded, params, training)
    assert wide.num_steps == plain.num_steps
    for key, value in plain.network.state_dict().items():
        torch.testing.assert_close(wide.network.state_dict()[key], value, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------- generation: step_3
def test_generation_thresholds_drops_empty_steps_in_order_and_falls_back_to_the_mean_session():
    steps = torch.tensor(
        [
            [[0, 0, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0]],  # two sessions, separated by an empty step
            [[0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],  # nothing survives
            [[1, 1, 1], [0, 0, 1], [1, 0, 0], [0, 1, 0]],
        ],
        dtype=torch.float32,
    )
    mean_session = torch.tensor([0.5, 0.25, 0.0])
    sequences, lengths, empty = compact_sessions(steps, steps.sum(dim=-1) > 0, mean_session)
    assert lengths.tolist() == [2, 1, 4] and empty.tolist() == [False, True, False]
    torch.testing.assert_close(sequences[0, :2], torch.tensor([[1.0, 0, 1], [0, 1, 0]]))
    assert sequences[0, 2:].sum() == 0
    torch.testing.assert_close(sequences[1, 0], mean_session)
    assert sequences[1, 1:].sum() == 0
    torch.testing.assert_close(sequences[2], steps[2])

    torch.manual_seed(0)
    network = RepeatedConversationGRU(embedding_dim=3, vocab_size=5, units=4, dropout=0.0, num_steps=4).eval()
    conversation = torch.randn(7, 3)
    binary, keep = network.generate(conversation, threshold=0.5)
    torch.testing.assert_close(binary, (torch.sigmoid(network(conversation)) >= 0.5).float())
    assert torch.equal(keep, binary.sum(dim=-1) > 0)


def test_generators_impute_only_the_missing_modality(tiny_data):
    store = FeatureStore(tiny_data, "cpu")
    generators = fit_generators(store, training_with())
    imputed = ImputedFeatures(store, generators[CONVERSATION_GENERATOR], generators[SESSION_GENERATOR])
    batch = store.batch(np.arange(tiny_data.num_pes))
    conversation = imputed.conversation(batch)
    sessions, lengths = imputed.sessions(batch)
    has_conversation = torch.as_tensor(tiny_data.has_conversation)
    has_session = torch.as_tensor(tiny_data.has_session)
    torch.testing.assert_close(conversation[has_conversation], batch.pe_conversation[has_conversation])
    assert conversation[~has_conversation].abs().sum(dim=1).gt(0).all()
    torch.testing.assert_close(lengths[has_session], batch.session_lengths[has_session])
    steps = batch.session_sequence.shape[1]
    torch.testing.assert_close(sessions[has_session][:, :steps], batch.session_sequence[has_session])
    generated_lengths = lengths[~has_session]
    assert ((generated_lengths >= 1) & (generated_lengths <= generators[SESSION_GENERATOR].num_steps)).all()
    generated = sessions[~has_session]
    assert set(torch.unique(generated).tolist()) <= {0.0, 1.0} or imputed.num_empty_generated > 0


@pytest.mark.parametrize("design", ["reference", "decoder"])
def test_joint_model_survives_all_empty_generated_sequences(tiny_data, design):
    store = FeatureStore(tiny_data, "cpu")
    training = training_with(session_generator=design)
    generators = fit_generators(store, training)
    session_generator = generators[SESSION_GENERATOR]
    session_generator.session_threshold = 1.01  # no probability reaches it: every generated session is empty
    model, result = fit_one(
        "generative_imputation", 0, store, small_params("generative_imputation"), training, generators
    )
    conversation_only = np.flatnonzero(~tiny_data.has_session)
    assert result.extra["empty_generated_sequences"] == len(conversation_only) > 0
    assert result.extra["session_generator"] == design
    # The fallback: one step holding the mean session of the generator's fitting PEs.
    sessions, lengths = model.imputed(store).sessions(store.batch(conversation_only))
    assert (lengths == 1).all()
    mean_session = session_generator.mean_session
    assert mean_session.sum() > 0
    torch.testing.assert_close(sessions[:, 0], mean_session.expand(len(conversation_only), -1))
    assert sessions[:, 1:].abs().sum() == 0
    scores = model.predict(store, np.arange(tiny_data.num_pes))
    assert scores.shape == (tiny_data.num_pes, tiny_data.num_items) and np.isfinite(scores).all()


def test_decoder_keeps_the_predicted_length_and_drops_empty_steps():
    torch.manual_seed(0)
    decoder = TeacherForcedDecoder(embedding_dim=4, vocab_size=5, units=6, dropout=0.0, num_steps=4).eval()
    conversation = torch.randn(8, 4)
    with torch.no_grad():
        decoder.tags.bias.fill_(50.0)  # every tag probability ~1: no step is empty
        decoder.length.bias.copy_(torch.tensor([0.0, 0.0, 100.0, 0.0]))  # predicted length 3
    steps, keep = decoder.generate(conversation, threshold=0.5)
    assert steps.shape == (8, 4, 5) and (steps == 1).all()
    assert keep[:, :3].all() and not keep[:, 3].any()
    _, keep = decoder.generate(conversation, threshold=1.01)
    assert not keep.any()


@pytest.mark.parametrize("design", ["reference", "decoder"])
def test_generation_is_padding_invariant(tiny_data, design):
    store = FeatureStore(tiny_data, "cpu")
    padded = FeatureStore(with_extra_padding(tiny_data, 3), "cpu")
    generators = fit_generators(store, training_with(session_generator=design))
    pair = (generators[CONVERSATION_GENERATOR], generators[SESSION_GENERATOR])
    plain, wide = ImputedFeatures(store, *pair), ImputedFeatures(padded, *pair)
    torch.testing.assert_close(plain.generated_conversation, wide.generated_conversation)
    torch.testing.assert_close(plain.generated_sessions, wide.generated_sessions)
    torch.testing.assert_close(plain.generated_lengths, wide.generated_lengths)


# --------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name", GENERATORS)
def test_a_checkpoint_of_the_other_design_is_refused(tiny_data, name):
    store = FeatureStore(tiny_data, "cpu")
    switch = {CONVERSATION_GENERATOR: "conversation_generator", SESSION_GENERATOR: "session_generator"}[name]
    other = {CONVERSATION_GENERATOR: "linear", SESSION_GENERATOR: "decoder"}[name]
    fitted, _ = fit_one(name, 0, store, small_params(name), training_with())
    state = fitted.state_dict()
    same = registry.get(name)(fitted.params, training_with(), 0)
    same.load_state_dict(state, store)  # round trip under the same switch
    if name == SESSION_GENERATOR:
        for a, b in zip(
            same.generate(store, np.arange(20)), fitted.generate(store, np.arange(20)), strict=True
        ):
            torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match=switch):
        registry.get(name)(fitted.params, training_with(**{switch: other}), 0).load_state_dict(state, store)
