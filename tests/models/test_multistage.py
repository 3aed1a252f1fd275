"""Specific tests of the multi-stage models: Knowledge Distillation (α/β, teacher fallback), Relative
Representation (anchor selection, frozen encoders reused across anchor counts); Generative Imputation's are in
test_fidelity_generative.py. The registry-parametrized contract tests in test_models.py cover them too."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mmrec_ray.config import ModelParams
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_SESSION
from mmrec_ray.models import registry
from mmrec_ray.models._anchors import anchor_candidates, select_anchors
from mmrec_ray.models.knowledge_distillation import distillation_weights
from mmrec_ray.models.relative_representation_conversation_encoder import CONVERSATION_ENCODER
from mmrec_ray.models.relative_representation_session_encoder import SESSION_ENCODER
from mmrec_ray.training.runner import fit_models, fit_one
from tests.models.conftest import make_prepared, small_params, with_extra_padding


def params_for(**changes):
    return {
        n: dataclasses.replace(small_params(n), **changes) for n in registry.names(include_components=True)
    }


@pytest.fixture(scope="module")
def anchor_data():
    return make_prepared(num_pes=1500, seed=3)


# --------------------------------------------------------------------------------- knowledge distillation
def test_alpha_beta_are_the_training_shares_of_each_modality(tiny_data, fast_training):
    train = ~tiny_data.is_test
    subset = tiny_data.subset[train]
    expected_alpha = np.isin(subset, [1, 3]).sum() / train.sum()  # conversations only or both
    expected_beta = np.isin(subset, [2, 3]).sum() / train.sum()  # sessions only or both
    assert distillation_weights(tiny_data) == pytest.approx((expected_alpha, expected_beta))
    assert 0 < expected_alpha < 1 and 0 < expected_beta < 1 and expected_alpha != expected_beta

    fitted = fit_models(tiny_data, ["knowledge_distillation"], [0], params_for(), fast_training, device="cpu")
    _, result = fitted[("knowledge_distillation", 0)]
    assert result.extra["alpha"] == pytest.approx(expected_alpha)
    assert result.extra["beta"] == pytest.approx(expected_beta)


def test_kd_routes_single_modality_pes_to_the_teachers_exactly(tiny_data, fast_training):
    fitted = fit_models(tiny_data, ["knowledge_distillation"], [0], params_for(), fast_training, device="cpu")
    model = fitted[("knowledge_distillation", 0)][0]
    conversation_teacher = fitted[("conversation", 0)][0]
    session_teacher = fitted[("session", 0)][0]
    assert model.teachers["conversation"] is conversation_teacher  # reused, not retrained
    assert model.teachers["session"] is session_teacher

    store = FeatureStore(tiny_data, "cpu")
    conversation_only = np.flatnonzero(tiny_data.subset == 1)
    session_only = np.flatnonzero(tiny_data.subset == 2)
    both = np.flatnonzero(tiny_data.subset == 3)
    everything = np.arange(tiny_data.num_pes)
    scores = model.predict(store, everything)
    np.testing.assert_array_equal(
        scores[conversation_only], conversation_teacher.predict(store, conversation_only)
    )
    np.testing.assert_array_equal(scores[session_only], session_teacher.predict(store, session_only))
    # PEs with both modalities get the student, which is neither teacher.
    assert np.isfinite(scores[both]).all()
    assert not np.allclose(scores[both], conversation_teacher.predict(store, both))
    assert not np.allclose(scores[both], session_teacher.predict(store, both))
    # Routing does not depend on which other PEs are in the request. Another batch shape may round a float32 GEMM
    # differently (one element 6e-8 off made this flaky), so compare to a tolerance far below what a wrong route
    # changes (the teachers differ from each other and from the student by > 1e-3).
    np.testing.assert_allclose(
        model.predict(store, conversation_only[:3]), scores[conversation_only[:3]], rtol=1e-5, atol=1e-6
    )
    teachers_differ = conversation_teacher.predict(store, both) - session_teacher.predict(store, both)
    assert np.abs(teachers_differ).max() > 1e-3


def test_kd_distillation_terms_change_the_student(tiny_data, fast_training, monkeypatch):
    """With α = β = 0 the student is trained on the labels alone; the teachers' soft labels must matter."""
    import mmrec_ray.models.knowledge_distillation as kd

    store = FeatureStore(tiny_data, "cpu")
    params = params_for()
    fitted = fit_models(tiny_data, ["knowledge_distillation"], [0], params, fast_training, store=store)
    teachers = {name: fitted[(name, 0)][0] for name in ("conversation", "session")}
    with_teachers = fitted[("knowledge_distillation", 0)][0]
    monkeypatch.setattr(kd, "distillation_weights", lambda data: (0.0, 0.0))
    without, _ = fit_one(
        "knowledge_distillation", 0, store, params["knowledge_distillation"], fast_training, teachers
    )
    both = np.flatnonzero(tiny_data.subset == 3)
    assert not np.allclose(with_teachers.predict(store, both), without.predict(store, both))


# --------------------------------------------------------------------------------- relative representation
@pytest.mark.parametrize("count", [1, 7, 24, 124, 125, 126])
def test_anchor_count_is_exact_and_anchors_have_one_conversation_and_one_session(anchor_data, count):
    pool = anchor_data.train_indices("all")
    anchors = select_anchors(anchor_data, pool, count, seed=0, quotas="equal")
    assert len(anchors.pes) == count == anchors.requested
    assert len(np.unique(anchors.pes)) == count, "an anchor PE is drawn once"
    assert np.isin(anchors.pes, pool).all()
    kinds = anchor_data.event_kind[anchors.pes]
    assert ((kinds == EVENT_CONVERSATION).sum(axis=1) == 1).all()
    assert ((kinds == EVENT_SESSION).sum(axis=1) == 1).all()
    assert (kinds != 0).sum(axis=1).max() == 2
    # Each anchor was drawn for a class (item) that it bought.
    assert anchor_data.targets[anchors.pes, anchors.classes].all()


def test_anchor_quota_is_equal_per_class(anchor_data):
    pool = anchor_data.train_indices("all")
    candidates = anchor_candidates(anchor_data, pool)
    per_class_candidates = anchor_data.targets[candidates].sum(axis=0)
    num_classes = anchor_data.num_items
    assert per_class_candidates.min() >= 30  # every class can fill its quota here
    for count in (125, 23):
        anchors = select_anchors(anchor_data, pool, count, seed=1, quotas="equal")
        per_class = np.bincount(anchors.classes, minlength=num_classes)
        assert per_class.sum() == count
        assert set(per_class.tolist()) <= {count // num_classes, count // num_classes + 1}
        assert (per_class == count // num_classes + 1).sum() == count % num_classes


def test_anchor_shortfall_of_a_rare_class_is_filled_from_the_others(anchor_data):
    pool = anchor_data.train_indices("all")
    candidates = anchor_candidates(anchor_data, pool)
    # Make item 0 rare among the candidates: only 3 of them bought it.
    targets = anchor_data.targets.copy()
    buyers = candidates[targets[candidates, 0] == 1]
    targets[buyers[3:], 0] = 0
    targets[buyers[3:], 1] = 1
    data = dataclasses.replace(anchor_data, targets=targets)
    anchors = select_anchors(data, pool, 125, seed=0, quotas="equal")
    per_class = np.bincount(anchors.classes, minlength=data.num_items)
    assert len(anchors.pes) == 125
    assert per_class[0] == 3, "the rare class takes all its candidates"
    assert per_class[1:].sum() == 122 and per_class[1:].min() >= 125 // data.num_items


def test_anchors_are_deterministic_per_seed_and_differ_across_seeds(anchor_data):
    pool = anchor_data.train_indices("all")
    for rule in ("reference", "equal"):
        first = select_anchors(anchor_data, pool, 50, seed=4, quotas=rule)
        again = select_anchors(anchor_data, pool, 50, seed=4, quotas=rule)
        other = select_anchors(anchor_data, pool, 50, seed=5, quotas=rule)
        np.testing.assert_array_equal(first.pes, again.pes)
        np.testing.assert_array_equal(first.classes, again.classes)
        assert set(first.pes.tolist()) != set(other.pes.tolist())


def test_too_few_candidates_uses_all_of_them_with_a_warning(tiny_data):
    pool = tiny_data.train_indices("all")
    candidates = anchor_candidates(tiny_data, pool)
    with pytest.warns(UserWarning, match="only"):
        anchors = select_anchors(tiny_data, pool, len(candidates) + 5, seed=0, quotas="equal")
    assert sorted(anchors.pes.tolist()) == sorted(candidates.tolist())


def test_relative_representation_reuses_frozen_encoders_across_anchor_counts(tiny_data, fast_training):
    store = FeatureStore(tiny_data, "cpu")
    params = params_for()
    encoders = {
        name: fit_one(name, 0, store, params[name], fast_training)[0]
        for name in (CONVERSATION_ENCODER, SESSION_ENCODER)
    }
    before = {k: v.clone() for k, v in encoders[CONVERSATION_ENCODER].state_dict()["encoder"].items()}
    for count in (4, 9):
        model_params = dataclasses.replace(params["relative_representation"], num_anchors=count)
        model, fit_result = fit_one(
            "relative_representation", 0, store, model_params, fast_training, encoders
        )
        assert model.encoders["conversation"] is encoders[CONVERSATION_ENCODER]
        assert model.encoders["session"] is encoders[SESSION_ENCODER]
        used = fit_result.extra["num_anchors_used"]
        assert used == len(model.anchors.pes) == model.anchors.quotas.sum() - model.anchors.shortfall
        assert model.network.encoder.input_size == used + 1  # |X| similarities + is_conversation
        conversation_table = model.raw_relative_table(store, "conversation")
        session_table = model.raw_relative_table(store, "session")
        assert conversation_table.shape == (store.conversation_table.shape[0], used)
        assert session_table.shape == (store.session_table.shape[0], used)
        # Eqs. (11)-(12): cosine similarities, and an anchor's own event is similar 1 to itself.
        assert conversation_table.abs().max() <= 1 + 1e-5
        own_rows = tiny_data.event_row[model.anchors.pes][
            tiny_data.event_kind[model.anchors.pes] == EVENT_SESSION
        ]
        np.testing.assert_allclose(
            session_table[torch.as_tensor(own_rows), torch.arange(used)].numpy(), 1.0, atol=1e-5
        )
    after = encoders[CONVERSATION_ENCODER].state_dict()["encoder"]
    assert all(torch.equal(before[k], after[k]) for k in before), "stage 3 must not train the encoders"


@pytest.mark.parametrize(
    ("name", "modality", "kind"),
    [(CONVERSATION_ENCODER, "conversation", EVENT_CONVERSATION), (SESSION_ENCODER, "session", EVENT_SESSION)],
)
def test_encoders_train_on_single_events(tiny_data, fast_training, name, modality, kind):
    store = FeatureStore(tiny_data, "cpu")
    _, result = fit_one(name, 0, store, small_params(name), fast_training)
    assert set(result.history) == {f"{modality}_encoder"}
    assert result.extra["examples"] == (tiny_data.event_kind[tiny_data.train_indices(modality)] == kind).sum()


# --------------------------------------------------------------------------------- all three
MULTISTAGE = ["knowledge_distillation", "generative_imputation", "relative_representation"]


@pytest.mark.parametrize("name", MULTISTAGE)
def test_padding_invariance_and_reproducibility(name, tiny_data, fast_training):
    params = params_for()
    fitted = fit_models(tiny_data, [name], [0], params, fast_training, device="cpu")
    again = fit_models(tiny_data, [name], [0], params, fast_training, device="cpu")
    everything = np.arange(tiny_data.num_pes)
    store = FeatureStore(tiny_data, "cpu")
    padded = FeatureStore(with_extra_padding(tiny_data, 4), "cpu")
    model = fitted[(name, 0)][0]
    scores = model.predict(store, everything)
    assert np.isfinite(scores).all() and scores.dtype == np.float32
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_allclose(model.predict(padded, everything), scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again[(name, 0)][0].predict(store, everything), scores)
    # Every stage (dependencies included) is bit-for-bit the same for the same seed.
    for key, (component, _) in fitted.items():
        first, second = component.state_dict(), again[key][0].state_dict()
        flat_first, flat_second = _flatten(first), _flatten(second)
        assert flat_first.keys() == flat_second.keys()
        for path in flat_first:
            assert torch.equal(flat_first[path], flat_second[path]), f"{key} {path}"


def _flatten(state, prefix=""):
    out = {}
    if isinstance(state, dict):
        for key, value in state.items():
            out.update(_flatten(value, f"{prefix}/{key}"))
    elif torch.is_tensor(state):
        out[prefix] = state
    elif isinstance(state, np.ndarray):
        out[prefix] = torch.as_tensor(state.copy())
    return out


def test_relative_features_are_standardised_on_fitting_events_only(tiny_data, fast_training):
    """similarity=standardised: each anchor's similarity standardised with statistics of the fitting events."""
    store = FeatureStore(tiny_data)
    fidelity = fast_training.fidelity
    training = dataclasses.replace(
        fast_training,
        fidelity=dataclasses.replace(
            fidelity,
            relative_representation=dataclasses.replace(
                fidelity.relative_representation, similarity="standardised"
            ),
        ),
    )
    model_params = ModelParams(batch_size=32, units=8, dropout=0.2, num_anchors=4)
    encoders = {
        name: fit_one(name, 0, store, model_params, training, {})[0]
        for name in (CONVERSATION_ENCODER, SESSION_ENCODER)
    }
    model, _ = fit_one("relative_representation", 0, store, model_params, training, encoders)
    fit_part, _ = tiny_data.split_validation(
        tiny_data.train_indices("all"), fast_training.validation_fraction
    )
    kinds, rows = tiny_data.event_kind[fit_part], tiny_data.event_row[fit_part]
    session_rows = torch.as_tensor(np.unique(rows[kinds == EVENT_SESSION]))
    raw = model.raw_relative_table(store, "session")
    scaled = model.relative_tables(store)[1]
    fitted = scaled[session_rows]
    torch.testing.assert_close(fitted.mean(0), torch.zeros(fitted.shape[1]), atol=1e-4, rtol=0)
    torch.testing.assert_close(fitted.std(0), torch.ones(fitted.shape[1]), atol=1e-3, rtol=0)
    assert torch.equal(scaled[-1], torch.zeros(scaled.shape[1]))  # padding row stays zero
    # test-PE events do not move the statistics: they equal those of the fitting events alone
    mean, std = model.scaling["session"]
    torch.testing.assert_close(mean, raw[session_rows].mean(0))
    # and the scaling survives a checkpoint round trip
    clone = type(model)(model.params, model.training, model.seed)
    clone.load_state_dict(model.state_dict(), store)
    torch.testing.assert_close(clone.relative_tables(store)[1], scaled)
