"""Contract tests run for every registered model (the other engineers' models are covered automatically):
output shape, NaN rows only where a model does not serve a PE, padding invariance, learning, reproducibility,
state-dict round trip. Everything goes through the Recommender interface and the real runner."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import registry
from mmrec_ray.training.runner import fit_models
from tests.models.conftest import make_prepared, small_params, with_extra_padding

MODELS = registry.names()


def fit(name, data, training, params=None, seed=0):
    params = params or {n: small_params(n) for n in registry.names(include_components=True)}
    fitted = fit_models(data, [name], [seed], params, training, device="cpu")
    return fitted[(name, seed)]


def all_scores(recommender, data):
    return recommender.predict(FeatureStore(data, "cpu"), np.arange(data.num_pes))


def final_history(name, result):
    if name in result.history:
        return result.history[name]
    return list(result.history.values())[-1] if result.history else []


def tensors(state, prefix=""):
    """Flatten a nested state dict into {path: float tensor}."""
    out = {}
    if isinstance(state, dict):
        for key, value in state.items():
            out.update(tensors(value, f"{prefix}/{key}"))
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            out.update(tensors(value, f"{prefix}/{i}"))
    elif torch.is_tensor(state) and state.is_floating_point():
        out[prefix] = state.detach().cpu().clone()
    elif isinstance(state, np.ndarray) and np.issubdtype(state.dtype, np.floating):
        out[prefix] = torch.as_tensor(state.copy())
    return out


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_nan_rows_only_where_not_served(name, tiny_data, fast_training):
    recommender, _ = fit(name, tiny_data, fast_training)
    indices = np.array([5, 0, 199, 3])
    scores = recommender.predict(FeatureStore(tiny_data, "cpu"), indices)
    assert scores.shape == (4, tiny_data.num_items) and scores.dtype == np.float32

    scores = all_scores(recommender, tiny_data)
    nan_rows = np.isnan(scores).any(axis=1)
    assert (np.isnan(scores).all(axis=1) == nan_rows).all(), "a row is either fully scored or fully NaN"
    expected_missing = {
        "conversation": ~tiny_data.has_conversation,
        "session": ~tiny_data.has_session,
    }.get(registry.get(name).trains_on, np.zeros(tiny_data.num_pes, dtype=bool))
    np.testing.assert_array_equal(nan_rows, expected_missing)
    assert np.isfinite(scores[~nan_rows]).all()


@pytest.mark.parametrize("name", MODELS)
def test_padding_invariance(name, tiny_data, fast_training):
    """Extra padded steps (a longer T) change neither the predictions of a fitted model nor a fit."""
    padded = with_extra_padding(tiny_data, 3)
    recommender, _ = fit(name, tiny_data, fast_training)
    reference = all_scores(recommender, tiny_data)
    np.testing.assert_allclose(
        all_scores(recommender, padded), reference, rtol=1e-5, atol=1e-6, equal_nan=True
    )
    refitted, _ = fit(name, padded, fast_training)
    np.testing.assert_allclose(all_scores(refitted, padded), reference, rtol=1e-4, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", MODELS)
def test_parameters_change_after_one_step(name, tiny_data):
    # batch larger than the training set: one epoch is one optimiser step
    params = {n: small_params(n, batch_size=4096) for n in registry.names(include_components=True)}
    before, _ = fit(name, tiny_data, TrainingConfig(max_epochs=0, device="cpu"), params)
    after, result = fit(name, tiny_data, TrainingConfig(max_epochs=1, device="cpu"), params)
    if not final_history(name, result):
        pytest.skip(f"{name} has no training loop of its own")
    old, new = tensors(before.state_dict()), tensors(after.state_dict())
    assert old.keys() == new.keys()
    changed = [k for k in old if not torch.equal(old[k], new[k])]
    assert changed, "no tensor changed after one step"
    if not registry.get(name).depends_on:
        weights = [
            k for k in old if k.endswith("weight") or k.endswith("bias") or "weight_" in k or "bias_" in k
        ]
        assert weights
        unchanged = sorted(set(weights) - set(changed))
        assert not unchanged, f"parameters not updated: {unchanged}"


@pytest.mark.parametrize("name", MODELS)
def test_loss_falls_when_overfitting_a_tiny_batch(name):
    data = make_prepared(num_pes=48, seed=1)
    params = {
        n: dataclasses.replace(small_params(n, batch_size=4096), units=32, dropout=0.0)
        for n in registry.names(include_components=True)
    }
    training = TrainingConfig(max_epochs=60, patience=1000, learning_rate=1e-2, device="cpu")
    _, result = fit(name, data, training, params)
    history = final_history(name, result)
    if not history:
        pytest.skip(f"{name} has no training loop of its own")
    first, last = history[0]["train"], history[-1]["train"]
    assert last < 0.5 * first, f"train loss {first:.3f} -> {last:.3f}"


@pytest.mark.parametrize("name", MODELS)
def test_fit_is_reproducible_for_a_fixed_seed(name, tiny_data, fast_training):
    first, result = fit(name, tiny_data, fast_training, seed=7)
    second, _ = fit(name, tiny_data, fast_training, seed=7)
    a, b = all_scores(first, tiny_data), all_scores(second, tiny_data)
    np.testing.assert_array_equal(a, b)
    if final_history(name, result):
        other, _ = fit(name, tiny_data, fast_training, seed=8)
        assert not np.array_equal(all_scores(other, tiny_data), a, equal_nan=True), "the seed has no effect"


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip(name, tiny_data, fast_training):
    recommender, _ = fit(name, tiny_data, fast_training)
    buffer = io.BytesIO()
    torch.save(recommender.state_dict(), buffer)
    buffer.seek(0)
    restored = registry.get(name)(recommender.params, fast_training, recommender.seed)
    store = FeatureStore(tiny_data, "cpu")
    restored.load_state_dict(torch.load(buffer, weights_only=True), store)
    np.testing.assert_array_equal(all_scores(restored, tiny_data), all_scores(recommender, tiny_data))
