"""Checkpoints are read with ``torch.load(weights_only=True)``: a file on shared or bucket storage that holds
pickled code is refused (without running it), an older version's checkpoint is one clear line, and every
registered model writes checkpoints that load that way."""

from __future__ import annotations

import builtins
import pickle

import numpy as np
import pytest
import torch

from mmrec_ray.cli import main
from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.errors import MmrecError
from mmrec_ray.evaluation.analyses import checkpoint_params
from mmrec_ray.models import registry
from mmrec_ray.pipeline import fitting
from mmrec_ray.training import runner
from tests.models.conftest import make_prepared, small_params

TRAINING = TrainingConfig(max_epochs=2, patience=2, device="cpu", num_threads=1)


class _Planted:
    """Unpickling this creates ``marker``: stands in for any code an attacker could plant in a checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _payload(state) -> dict:
    return {
        "model": "popular",
        "seed": 0,
        "params": {},
        "training": {},
        "state": state,
        "fit_result": {},
        "environment": {},
    }


def _write(path, payload, legacy: bool = False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if legacy:  # a bare pickle, not torch's zip format: torch.load falls back to unpickling it directly
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=2)  # the protocol torch writes: no warning on load
    else:
        torch.save(payload, path)
    return path


def _unsafe_message(path) -> str:
    return f"{path}: not a safe checkpoint (written by an older version?); delete it and re-run fit"


@pytest.fixture(scope="module")
def data():
    return make_prepared()


def _raised(call) -> Exception | None:
    try:
        call()
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("legacy", [False, True], ids=["torch_save", "bare_pickle"])
def test_load_checkpoint_refuses_planted_code_without_running_it(tmp_path, data, legacy):
    marker = tmp_path / "marker"
    path = _write(runner.checkpoint_path(tmp_path, "popular", 0), _payload(_Planted(marker)), legacy)
    error = _raised(
        lambda: runner.load_checkpoint(tmp_path, "popular", 0, FeatureStore(data, "cpu"), TRAINING)
    )
    assert not marker.exists(), "loading the checkpoint ran the code planted in it"
    # An MmrecError: the CLI prints it as one line, not a traceback.
    assert isinstance(error, MmrecError) and type(error).__name__ == "UnsafeCheckpointError", repr(error)
    assert str(error) == _unsafe_message(path)


def test_every_checkpoint_reader_refuses_planted_code(tmp_path, data):
    marker = tmp_path / "marker"
    path = _write(runner.checkpoint_path(tmp_path, "popular", 0), _payload(_Planted(marker)))
    store = FeatureStore(data, "cpu")
    readers = {
        "changed_fidelity": lambda: runner.changed_fidelity(tmp_path, "popular", 0, TRAINING),
        "checkpoint_params": lambda: checkpoint_params(tmp_path, "popular", 0),
        "load_checkpoint_bytes": lambda: fitting.load_checkpoint_bytes(
            path.read_bytes(), store, TRAINING, "model.pt"
        ),
    }
    for reader, call in readers.items():
        error = _raised(call)
        assert not marker.exists(), f"{reader} ran the code planted in the checkpoint"
        assert type(error).__name__ == "UnsafeCheckpointError", f"{reader}: {error!r}"
    assert str(_raised(readers["load_checkpoint_bytes"])).startswith("model.pt: not a safe checkpoint")


def test_older_numpy_checkpoint_is_one_clear_line_in_the_cli(tmp_path, capsys):
    make_prepared(num_pes=120).save(tmp_path / "prepared" / "tensors")
    # What Popular and Relative Representation wrote before checkpoints were tensors only.
    path = _write(runner.checkpoint_path(tmp_path, "popular", 0), _payload({"counts": np.ones(6)}))
    code = main(["fit", "--run-dir", str(tmp_path), "--model", "popular", "--seeds", "0"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"mmrec fit: error: {_unsafe_message(path)}"


def test_checkpoint_payload_refuses_state_that_would_not_load(data):
    fitted = runner.fit_models(data, ["popular"], [0], {"popular": small_params("popular")}, TRAINING)
    model, result = fitted[("popular", 0)]
    model.state_dict = lambda: {"counts": np.ones(3)}  # a model that forgot to convert its numpy state
    with pytest.raises(TypeError, match=r"popular checkpoint\.state\.counts is a numpy\.ndarray"):
        runner.checkpoint_payload(model, result, TRAINING)


def test_every_registered_model_checkpoint_loads_with_weights_only(tmp_path, data):
    names = registry.names(include_components=True)
    params = {name: small_params(name) for name in names}
    store = FeatureStore(data, "cpu")
    fitted = runner.fit_models(data, names, [0], params, TRAINING, store=store)
    indices = np.arange(data.num_pes)
    for name in names:
        model, result = fitted[(name, 0)]
        path = runner.save_checkpoint(tmp_path, model, result, TRAINING)
        payload = torch.load(path, map_location="cpu", weights_only=True)
        assert payload["model"] == name and payload["seed"] == 0
        restored, restored_result = runner.load_checkpoint(tmp_path, name, 0, store, TRAINING)
        assert restored_result.best_epoch == result.best_epoch
        if model.reported:  # stage components are checked through the models that embed them
            np.testing.assert_array_equal(
                restored.predict(store, indices), model.predict(store, indices), err_msg=name
            )
