"""Local (Ray-free) fitting of several models and seeds: dependency order, reuse, checkpoints, predictions.

- ``fit_models`` fits the wanted models and everything they depend on, in ``registry.dependency_order``; a
  dependency (Conversation for Late Fusion, teachers, generators, encoders) is fitted once per seed and the same
  fitted instance is handed to every model that needs it — never retrained.
- ``fit_one`` fits one (model, seed) given its already fitted dependencies: what a Ray Tune trial or a Ray Train
  worker calls.
- ``predict_test`` turns a fitted model into the long predictions format (SPEC 6) for the test PEs.
- ``save_checkpoint`` / ``load_checkpoint``: ``RUN_DIR/checkpoints/{model}/seed={seed}.pt`` holding the state
  dict, the resolved params and the FitResult.
- Checkpoints hold only tensors and plain values (dict, list, tuple, str, int, float, bool, None) and are read
  with ``torch.load(weights_only=True)`` (``read_checkpoint``): run directories live on shared or bucket storage,
  and a full unpickler would run whatever code anyone who can write there put in a checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mmrec_ray.config import ModelParams, TrainingConfig, from_dict
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.errors import MmrecError
from mmrec_ray.io import atomic_write
from mmrec_ray.models import registry
from mmrec_ray.models.base import EpochCallback, FitResult, Recommender
from mmrec_ray.models.params import default_params
from mmrec_ray.training.loop import resolve_device

FitKey = tuple[str, int]  # (model name, seed)


def fit_one(
    name: str,
    seed: int,
    store: FeatureStore,
    params: ModelParams,
    training: TrainingConfig,
    dependencies: dict[str, Recommender] | None = None,
    callback: EpochCallback | None = None,
) -> tuple[Recommender, FitResult]:
    """Fit model ``name`` with ``seed``; ``dependencies`` must hold a fitted instance (same seed) of every name in
    its ``depends_on``."""
    cls = registry.get(name)
    dependencies = dependencies or {}
    missing = [d for d in cls.depends_on if d not in dependencies]
    if missing:
        raise ValueError(f"{name} depends on {missing}: fit those first (same seed) and pass them in")
    wrong_seed = [d for d in cls.depends_on if dependencies[d].seed != seed]
    if wrong_seed:
        raise ValueError(f"{name} seed {seed}: dependencies {wrong_seed} were fitted with another seed")
    recommender = cls(params, training, seed)
    result = recommender.fit(store, {d: dependencies[d] for d in cls.depends_on}, callback)
    return recommender, result


def resolve_params(name: str, params: dict[str, ModelParams] | None) -> ModelParams:
    """``params[name]`` when given, else the paper's Table 2 (``default_params``)."""
    if params and name in params:
        return params[name]
    return default_params(name)


def fit_models(
    data: PreparedData,
    names: list[str],
    seeds: list[int],
    params: dict[str, ModelParams] | None = None,
    training: TrainingConfig | None = None,
    device: str | torch.device | None = None,
    store: FeatureStore | None = None,
    callback: Callable[[str, int, str, int, float, float], None] | None = None,
    provided: dict[FitKey, Recommender] | None = None,
    on_fitted: Callable[[str, int, Recommender, FitResult], None] | None = None,
) -> dict[FitKey, tuple[Recommender, FitResult]]:
    """Fit ``names`` (plus their dependencies) for every seed; returns (name, seed) -> (recommender, result) for
    every fitted or provided model, dependencies included.

    ``device`` defaults to ``training.device`` resolved; ``store`` reuses an existing FeatureStore.
    ``callback(name, seed, stage, epoch, train_loss, val_loss)`` after every epoch. ``provided`` holds already
    fitted instances (e.g. loaded from checkpoints) that are used instead of fitting; ``on_fitted`` is called
    after each new fit (e.g. to checkpoint it at once).
    """
    training = training or TrainingConfig()
    if store is None:
        store = FeatureStore(data, device=device if device is not None else resolve_device(training))
    provided = provided or {}
    fitted: dict[FitKey, tuple[Recommender, FitResult]] = {}
    order = registry.dependency_order(list(names))
    for seed in seeds:
        for name in order:
            key = (name, seed)
            if key in provided:
                fitted[key] = (provided[key], FitResult(extra={"loaded": True}))
                continue
            dependencies = {d: fitted[(d, seed)][0] for d in registry.get(name).depends_on}
            epoch_callback = None
            if callback is not None:

                def epoch_callback(stage, epoch, train_loss, val_loss, _name=name, _seed=seed):
                    callback(_name, _seed, stage, epoch, train_loss, val_loss)

            recommender, result = fit_one(
                name, seed, store, resolve_params(name, params), training, dependencies, epoch_callback
            )
            fitted[key] = (recommender, result)
            if on_fitted is not None:
                on_fitted(name, seed, recommender, result)
    return fitted


def predict_test(
    recommender: Recommender, store: FeatureStore, data: PreparedData | None = None
) -> pd.DataFrame:
    """Scores of the test PEs in the long predictions format (model, seed, purchase_event_id, item_id, score);
    PEs the model does not serve (NaN rows) have no rows."""
    from mmrec_ray.evaluation.predictions import scores_to_frame

    data = data if data is not None else store.data
    test = data.test_indices()
    scores = recommender.predict(store, test)
    return scores_to_frame(
        recommender.name, recommender.seed, np.asarray(data.purchase_event_id)[test], data.item_ids, scores
    )


def write_test_predictions(path: str | Path, frame: pd.DataFrame) -> Path:
    """Atomic, validated write of a predictions frame (the evaluation package's writer)."""
    from mmrec_ray.evaluation.predictions import write_predictions

    return write_predictions(path, frame)


# ----------------------------------------------------------------------------------------------- checkpoints
def checkpoint_path(run_dir: str | Path, name: str, seed: int) -> Path:
    return Path(run_dir) / "checkpoints" / name / f"seed={seed}.pt"


def predictions_path(run_dir: str | Path, name: str, seed: int) -> Path:
    return Path(run_dir) / "predictions" / f"{name}__seed{seed}.parquet"


def environment() -> dict[str, str]:
    """Versions recorded with every checkpoint and resolved config."""
    import mmrec_ray

    return {
        "python": str(platform.python_version()),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "pandas": str(pd.__version__),
        "mmrec_ray": str(getattr(mmrec_ray, "__version__", "unknown")),
    }


class UnsafeCheckpointError(MmrecError):
    """A checkpoint that ``torch.load(weights_only=True)`` refuses: it holds pickled objects, not only tensors."""


_PLAIN = (str, int, float, bool, type(None))


def _plain(value: Any) -> Any:
    """Fit metadata with numpy scalars and arrays turned into Python values (weights_only refuses numpy)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item) for item in value)
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def _require_safe(value: Any, where: str) -> None:
    """Fail at save time, naming the entry, rather than write a checkpoint that ``read_checkpoint`` refuses."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _PLAIN):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}, not a str/int")
            _require_safe(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _require_safe(item, f"{where}[{i}]")
    elif not (torch.is_tensor(value) or isinstance(value, _PLAIN)):
        raise TypeError(
            f"{where} is a {type(value).__module__}.{type(value).__qualname__}: a checkpoint may hold only "
            "tensors and dict/list/tuple/str/int/float/bool/None (convert it in state_dict)"
        )


def checkpoint_payload(
    recommender: Recommender, result: FitResult, training: TrainingConfig | None = None
) -> dict[str, Any]:
    """{model, seed, params, training, state, fit_result, environment}: what a checkpoint holds, on disk or in
    the Ray object store. Only tensors and plain values, so that ``read_checkpoint`` loads it."""
    payload = {
        "model": recommender.name,
        "seed": int(recommender.seed),
        "params": _plain(dataclasses.asdict(recommender.params)),
        "training": _plain(dataclasses.asdict(training or recommender.training)),
        "state": recommender.state_dict(),
        "fit_result": _plain(dataclasses.asdict(result)),
        "environment": environment(),
    }
    _require_safe(payload, f"{recommender.name} checkpoint")
    return payload


def read_checkpoint(source: str | Path | bytes, where: str | None = None) -> dict[str, Any]:
    """A checkpoint payload (a file path, or the bytes of one) loaded with ``weights_only=True``; a payload
    holding anything else (an older version's numpy arrays, or planted code) raises ``UnsafeCheckpointError``."""
    where = where or (str(source) if not isinstance(source, bytes) else "checkpoint")
    handle = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        payload = torch.load(handle, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # `mmrec fit` reuses an existing checkpoint, so deleting it is what makes it fit again.
        raise UnsafeCheckpointError(
            f"{where}: not a safe checkpoint (written by an older version?); delete it and re-run fit"
        ) from None
    if not isinstance(payload, dict) or "state" not in payload:
        raise UnsafeCheckpointError(f"{where}: not a checkpoint of this package (no model state)")
    return payload


def restore_checkpoint(
    payload: dict[str, Any],
    store: FeatureStore,
    training: TrainingConfig | None = None,
    where: str = "checkpoint",
) -> tuple[Recommender, FitResult]:
    """Rebuild a fitted recommender (with the params it was trained with) from ``checkpoint_payload``."""
    params = from_dict(ModelParams, payload["params"], where=f"{where}: params")
    training = training or from_dict(TrainingConfig, payload["training"], where=f"{where}: training")
    recommender = registry.get(payload["model"])(params, training, int(payload["seed"]))
    recommender.load_state_dict(payload["state"], store)
    return recommender, FitResult(**payload["fit_result"])


def save_checkpoint(
    run_dir: str | Path, recommender: Recommender, result: FitResult, training: TrainingConfig | None = None
) -> Path:
    """torch.save ``checkpoint_payload`` atomically at ``checkpoint_path``."""
    payload = checkpoint_payload(recommender, result, training)
    return atomic_write(
        checkpoint_path(run_dir, recommender.name, recommender.seed), lambda p: torch.save(payload, p)
    )


def load_checkpoint(
    run_dir: str | Path, name: str, seed: int, store: FeatureStore, training: TrainingConfig | None = None
) -> tuple[Recommender, FitResult]:
    """Rebuild a fitted recommender (with the params it was trained with) from its checkpoint."""
    path = checkpoint_path(run_dir, name, seed)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no checkpoint for {name} seed {seed}")
    return restore_checkpoint(read_checkpoint(path), store, training, str(path))


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(f"{prefix}.{key}", item))
        return out
    return {prefix: value}


def changed_fidelity(run_dir: str | Path, name: str, seed: int, training: TrainingConfig) -> list[str]:
    """The ``fidelity.*`` switches whose values differ between the checkpoint of (name, seed) and ``training``
    (``fidelity.key: old -> new``); empty when they agree. A checkpoint from before the switches existed was
    trained with the pre-review behaviour and differs in every switch that changed since."""
    payload = read_checkpoint(checkpoint_path(run_dir, name, seed))
    stored = _flatten("fidelity", (payload.get("training") or {}).get("fidelity") or {})
    current = _flatten("fidelity", dataclasses.asdict(training.fidelity))
    return [
        f"{key}: {stored.get(key, 'unset')} -> {value}"
        for key, value in current.items()
        if stored.get(key) != value
    ]
