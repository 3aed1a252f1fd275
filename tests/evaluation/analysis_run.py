"""A tiny fitted run directory (prepared tensors, checkpoints, predictions) for the analyses and report tests."""

from __future__ import annotations

from pathlib import Path

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.models import registry
from mmrec_ray.training.runner import (
    fit_models,
    predict_test,
    predictions_path,
    save_checkpoint,
    write_test_predictions,
)
from tests.models.conftest import make_prepared, small_params

RUN_MODELS = (
    "popular",
    "conversation",
    "late_fusion",
    "keyword",
    "latent_feature",
    "relative_representation",
)
TRAINING = TrainingConfig(max_epochs=2, patience=2, device="cpu", num_threads=1)


def build_fitted_run(root: Path, models=RUN_MODELS, seeds=(0, 1), num_pes: int = 240) -> PreparedData:
    """Fit ``models`` for ``seeds`` on a tiny synthetic PreparedData and lay the run out as `mmrec fit` does."""
    data = make_prepared(num_pes=num_pes)
    data.save(root / "prepared" / "tensors")
    params = {name: small_params(name) for name in registry.dependency_order(list(models))}
    store = FeatureStore(data, device="cpu")
    fitted = fit_models(data, list(models), list(seeds), params, TRAINING, store=store)
    for (name, seed), (recommender, result) in fitted.items():
        save_checkpoint(root, recommender, result, TRAINING)
        if registry.get(name).reported:
            write_test_predictions(predictions_path(root, name, seed), predict_test(recommender, store))
    return data
