"""Hyperparameter search spaces: a model declares its own (``Recommender.search_space``), a config may change it
(``tune.spaces``), and the tune stage hands it to Ray Tune.

A space maps hyperparameter names to one of five kinds, written alike in Python and in YAML:

    grid([64, 128])            {grid: [64, 128]}                  a list of values
    choice([64, 128])          {choice: [64, 128]}                a list of values
    uniform(0.1, 0.5)          {uniform: [0.1, 0.5]}              a float between the bounds
    loguniform(1e-4, 1e-2)     {loguniform: [1.0e-4, 1.0e-2]}     a float, uniform in log space
    randint(1, 4)              {randint: [1, 4]}                  an integer; high excluded, as Ray's tune.randint

The searcher decides how a space is walked (``tune.search``): ``grid`` takes every combination of the lists (grid
and choice alike; ranges have no grid, so the config is refused), ``random`` and ``optuna`` sample each dimension
(lists as ``tune.choice``, ranges as ``tune.uniform`` / ``tune.loguniform`` / ``tune.randint``). So one
declaration serves every searcher: the paper's grid is also a categorical space for TPE.

Only the standard library here: the config module imports this to validate ``tune.spaces``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from mmrec_ray.errors import ConfigError

LISTS = ("grid", "choice")
RANGES = ("uniform", "loguniform", "randint")
KINDS = LISTS + RANGES
EXAMPLE = "{grid: [64, 128]}, {choice: [0.2, 0.4]}, {uniform: [0.1, 0.5]}, {loguniform: [1.0e-4, 1.0e-2]}, {randint: [1, 4]}"

# YAML 1.1 (PyYAML) reads 1e-4 as a string: a float needs a dot there (1.0e-4). A bound written as in Python is
# what anyone types, so such strings are taken as the numbers they spell.
_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def yaml_number(value: Any) -> Any:
    """``value``, or the float a YAML-1.1 scientific-notation string such as ``"1e-4"`` spells."""
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
        return float(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Space:
    """One dimension: ``kind`` and its ``args`` (the values of a list, or ``(low, high)`` of a range)."""

    kind: str
    args: tuple

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; one of {', '.join(KINDS)}")
        args = tuple(yaml_number(a) for a in self.args)
        object.__setattr__(self, "args", args)
        if self.kind in LISTS:
            if not args:
                raise ValueError(f"{self.kind} needs at least one value")
            for value in args:
                if not isinstance(value, (int, float, str, bool)) or (
                    isinstance(value, float) and not math.isfinite(value)
                ):
                    raise ValueError(f"{self.kind} value {value!r} is not a finite number, string or bool")
            if len(set(args)) != len(args):
                raise ValueError(f"{self.kind} lists a value twice: {list(args)}")
            return
        if len(args) != 2 or not all(_is_number(a) and math.isfinite(a) for a in args):
            raise ValueError(f"{self.kind} needs [low, high], two numbers; got {list(args)}")
        low, high = args
        if not low < high:
            raise ValueError(f"{self.kind} needs low < high; got [{low}, {high}]")
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform needs low > 0; got {low}")
        if self.kind == "randint" and not all(isinstance(a, int) for a in args):
            raise ValueError(f"randint needs integer bounds; got [{low}, {high}]")

    @property
    def is_list(self) -> bool:
        return self.kind in LISTS

    @property
    def values(self) -> list:
        """The values of a list (what grid search walks, in order)."""
        if not self.is_list:
            raise TypeError(f"{self} is a range: it has no list of values")
        return list(self.args)

    def to_ray(self, searcher: str = "random"):
        """The Ray Tune domain of this dimension for a sampling searcher, or (``searcher="grid"``) for grid
        search (``tune.grid_search``; ranges have none)."""
        from ray import tune

        if self.is_list:
            return tune.grid_search(self.values) if searcher == "grid" else tune.choice(self.values)
        if searcher == "grid":
            raise ValueError(f"{self} is a range: grid search cannot walk it")
        low, high = self.args
        return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[self.kind](
            low, high
        )

    def as_config(self) -> dict[str, list]:
        """The YAML form, ``{kind: [...]}``."""
        return {self.kind: list(self.args)}

    def __repr__(self) -> str:
        if self.is_list:
            return f"{self.kind}({list(self.args)})"
        return f"{self.kind}({self.args[0]!r}, {self.args[1]!r})"


def grid(values) -> Space:
    return Space("grid", tuple(values))


def choice(values) -> Space:
    return Space("choice", tuple(values))


def uniform(low: float, high: float) -> Space:
    return Space("uniform", (low, high))


def loguniform(low: float, high: float) -> Space:
    return Space("loguniform", (low, high))


def randint(low: int, high: int) -> Space:
    return Space("randint", (low, high))


def parse(value: Any, where: str) -> Space | None:
    """A config entry (``{kind: [...]}``, or null: not searched) as a Space; anything else is a ConfigError."""
    if value is None or isinstance(value, Space):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ConfigError(f"{where}: expected one of {EXAMPLE}, or null (not searched); got {value!r}")
    ((kind, args),) = value.items()
    if kind not in KINDS:
        raise ConfigError(f"{where}: unknown kind {kind!r}; one of {', '.join(KINDS)} (e.g. {EXAMPLE})")
    if not isinstance(args, (list, tuple)):
        raise ConfigError(f"{where}: {kind} takes a list, e.g. {{{kind}: [...]}}; got {args!r}")
    try:
        return Space(kind, tuple(args))
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


# --------------------------------------------------------------------------------------------------- types
def value_type(default: Any) -> type | None:
    """The type a hyperparameter's values must have, read from its default (None: any)."""
    for kind in (bool, int, float, str):
        if isinstance(default, kind):
            return kind
    return None


def fits_type(dimension: Space, kind: type | None) -> str | None:
    """Why ``dimension`` cannot give values of type ``kind`` (None when it can): an integer hyperparameter takes
    integer lists or randint, a float one numbers or any range, a string or bool one lists of those only."""
    if kind is None:
        return None
    if dimension.is_list:
        if kind is float:
            wrong = [v for v in dimension.values if not _is_number(v)]
        elif kind is int:
            wrong = [v for v in dimension.values if not isinstance(v, int) or isinstance(v, bool)]
        else:
            wrong = [v for v in dimension.values if not isinstance(v, kind)]
        return f"values {wrong} are not {kind.__name__}" if wrong else None
    if kind is float or (kind is int and dimension.kind == "randint"):
        return None
    return f"{dimension.kind} gives {'integers' if dimension.kind == 'randint' else 'floats'}, not {kind.__name__}"


# --------------------------------------------------------------------------------------------------- resolving
def declared(cls) -> dict[str, Any]:
    """Every hyperparameter model class ``cls`` takes, with its default: ModelParams' fields and its own."""
    from mmrec_ray.config import ModelParams

    defaults = {name: getattr(ModelParams, name) for name in ModelParams.core_fields()}
    return {**defaults, **cls.hyperparameters}


def resolve_with_origins(tune_cfg, name: str) -> dict[str, tuple[Space, str]]:
    """The space Tune searches for model ``name`` with, per field, where it came from (for error messages):
    the model's ``search_space``, then ``tune.<field>`` lists (the paper-grid shorthands: they replace that field's
    values for every model that searches it), then ``tune.spaces.<model>`` (adds, replaces, or with null removes
    a field)."""
    from mmrec_ray.models import registry

    cls = registry.get(name)
    space = {
        field: (dimension, f"{name}.search_space.{field}") for field, dimension in cls.search_space.items()
    }
    for field in list(space):
        values = getattr(tune_cfg, field, None) if field in _shorthands(tune_cfg) else None
        if values is not None:
            space[field] = (grid(values), f"tune.{field}")
    overrides = (tune_cfg.spaces or {}).get(name) or {}
    known = declared(cls)
    for field, value in overrides.items():
        where = f"tune.spaces.{name}.{field}"
        if field not in known:
            raise ConfigError(
                f"{where}: {name} has no hyperparameter {field!r}; it takes {sorted(known)} (a new one is "
                f"declared in the model's `hyperparameters`)"
            )
        dimension = parse(value, where)
        if dimension is None:
            space.pop(field, None)
        else:
            space[field] = (dimension, where)
    for field, (dimension, where) in space.items():
        problem = fits_type(dimension, value_type(known[field]))
        if problem:
            raise ConfigError(
                f"{where}: {field} of {name} takes {value_type(known[field]).__name__}s: {problem}"
            )
    return space


def resolve(tune_cfg, name: str) -> dict[str, Space]:
    """The space Tune searches for model ``name`` (see ``resolve_with_origins``)."""
    return {field: dimension for field, (dimension, _) in resolve_with_origins(tune_cfg, name).items()}


def _shorthands(tune_cfg) -> tuple[str, ...]:
    from mmrec_ray.config import ModelParams

    return tuple(f for f in ModelParams.core_fields() if hasattr(tune_cfg, f))
