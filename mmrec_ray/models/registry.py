"""Name -> recommender class. Registering a name twice is an error (two models must never shadow each other)."""

from __future__ import annotations

import importlib
import pkgutil

# The paper's ten models in its Table 3 order: the existing approaches (section 4.2), then the proposed ones
# (section 4.3). Tables, figures and the default experiment list all follow this order.
PAPER_BASELINES = (
    "popular",
    "conversation",
    "session",
    "late_fusion",
    "knowledge_distillation",
    "generative_imputation",
    "neutral_imputation",
)
PAPER_PROPOSED = ("keyword", "latent_feature", "relative_representation")
PAPER_MODELS = PAPER_BASELINES + PAPER_PROPOSED

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: ``@register`` on a Recommender subclass with a ``name`` class attribute."""
    name = getattr(cls, "name", None)
    if not name:
        raise ValueError(f"{cls.__qualname__} has no `name`")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].__qualname__}")
    _REGISTRY[name] = cls
    return cls


def _import_all() -> None:
    import mmrec_ray.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in {"registry", "base", "layers"} and not info.name.startswith("_"):
            importlib.import_module(f"mmrec_ray.models.{info.name}")


def get(name: str) -> type:
    _import_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def names(include_components: bool = False) -> list[str]:
    """Registered names; stage components (generators, encoders) only when asked."""
    _import_all()
    return sorted(n for n, c in _REGISTRY.items() if include_components or getattr(c, "reported", True))


def dependency_order(wanted: list[str]) -> list[str]:
    """``wanted`` plus everything they depend on, each after its dependencies (raises on cycles)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            raise ValueError(f"dependency cycle through {name!r}")
        visiting.add(name)
        for dependency in get(name).depends_on:
            visit(dependency)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order
