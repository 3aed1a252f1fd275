"""Default hyperparameters per model: the paper's Table 2, read from ``configs/hyperparameters.yaml``.

``default_params(name)`` gives the YAML entry when the file has one, else ``TABLE_2`` below (the same values,
so an installed package without the configs folder behaves identically), else ``ModelParams()`` (models with
nothing to tune: Popular, Late Fusion, and stage components that take their parent's values); a model's own
hyperparameters (``Recommender.hyperparameters``) at their declared defaults.
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache
from pathlib import Path

from mmrec_ray.config import ModelParams, from_dict, load_yaml

# The packaged copy (mmrec_ray/configs/ links to the repository's configs/), found in a wheel install too.
HYPERPARAMETERS_FILE = Path(__file__).resolve().parents[1] / "configs" / "hyperparameters.yaml"

# Table 2 of the paper: (batch size, units, dropout).
TABLE_2: dict[str, dict[str, float | int]] = {
    "conversation": {"batch_size": 512, "units": 64, "dropout": 0.2},
    "session": {"batch_size": 256, "units": 256, "dropout": 0.3},
    "knowledge_distillation": {"batch_size": 256, "units": 128, "dropout": 0.4},
    "generative_imputation": {"batch_size": 128, "units": 256, "dropout": 0.2},
    "neutral_imputation": {"batch_size": 128, "units": 128, "dropout": 0.2},
    "keyword": {"batch_size": 512, "units": 256, "dropout": 0.2},
    "latent_feature": {"batch_size": 512, "units": 256, "dropout": 0.3},
    "relative_representation": {"batch_size": 256, "units": 256, "dropout": 0.3, "num_anchors": 125},
    # Stage components: not in Table 2; the values hard-coded in the reference scripts (model_*_step_*.py).
    "generative_imputation.conversation_generator": {"batch_size": 128, "units": 64, "dropout": 0.4},
    "generative_imputation.session_generator": {"batch_size": 128, "units": 256, "dropout": 0.3},
    "relative_representation.conversation_encoder": {"batch_size": 128, "units": 256, "dropout": 0.4},
    "relative_representation.session_encoder": {"batch_size": 256, "units": 256, "dropout": 0.2},
}


@lru_cache(maxsize=4)
def _table(path: str) -> dict[str, ModelParams]:
    file = Path(path)
    if not file.exists():
        return {}
    section = load_yaml(file).get("hyperparameters") or {}
    return {
        name: from_dict(ModelParams, values, where=f"{file}: hyperparameters.{name}")
        for name, values in section.items()
    }


def default_params(name: str, path: str | Path | None = None) -> ModelParams:
    """Table 2 hyperparameters of model ``name`` (a fresh copy: callers may modify it), with the defaults of the
    hyperparameters the model declares itself (``Recommender.hyperparameters``)."""
    table = _table(str(path or HYPERPARAMETERS_FILE))
    if name in table:
        params = dataclasses.replace(table[name])
    elif name in TABLE_2:
        params = from_dict(ModelParams, dict(TABLE_2[name]), where=f"TABLE_2.{name}")
    else:
        params = ModelParams()
    from mmrec_ray.models import registry

    try:
        return params.with_defaults(registry.get(name).hyperparameters)
    except KeyError:  # not (yet) registered: nothing declared to fill in
        return params
