"""mmrec_ray: recommendation from multi-modal user interactions (Bruun, Balog & Maistro, SIGIR 2024), on Ray.

The public Python API (README, "Python API"): ``Experiment`` runs an experiment and reads its results,
``evaluate`` scores long-form predictions in memory, ``load_config`` reads a config file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["Experiment", "evaluate", "load_config", "__version__"]

if TYPE_CHECKING:
    from mmrec_ray.api import Experiment, evaluate
    from mmrec_ray.config import load_config

# Resolved on first use: `import mmrec_ray` (the CLI's `--help`, every Ray worker) must not pay for pandas,
# torch or Ray.
_LAZY = {"Experiment": "mmrec_ray.api", "evaluate": "mmrec_ray.api", "load_config": "mmrec_ray.config"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mmrec_ray' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
