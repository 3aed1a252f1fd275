"""The report as data (sections of blocks) and the helpers every part of it reads run files with.

A block is one of: ("p", text) a paragraph with inline Markdown (**bold**, `code`); ("md", markdown) a Markdown
table with its caption; ("table", DataFrame, caption); ("image", relative PNG path, caption); ("code", text,
summary) preformatted, collapsed in HTML; ("missing", text) a stated gap; ("list", [items]) a bullet list.
The Markdown and HTML writers render the same blocks, so the two documents cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mmrec_ray.evaluation.significance import TEST_NAMES, method_of
from mmrec_ray.evaluation.tables import display_name, name_list

Block = tuple


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)
    level: int = 2


@dataclass
class Report:
    title: str
    run_dir: Path
    sections: list[Section] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # relative paths of every figure included
    tables: list[str] = field(default_factory=list)  # names of every table included


def read_csv(path: Path) -> pd.DataFrame | None:
    """The CSV at ``path``, or None when it is absent or has no rows (a stage not run, a table with nothing)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    return frame if len(frame) else None


def read_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return {}


def switched_off(config: dict, key: str) -> bool:
    analyses = config.get("analyses") or {}
    return analyses.get("enabled") is False or analyses.get(key) is False


def p_text(value: float) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:.2g}" if value >= 1e-4 else "<1e-4"


def test_name(rows: pd.DataFrame) -> str:
    """How the report names the test behind ``rows`` (their ``test`` column as written by aggregate): a claim
    must name the test that produced the numbers, whichever ``hr_test`` / ``map_test`` was used."""
    ids = list(dict.fromkeys(str(t) for t in rows["test"])) if "test" in rows else []
    names = list(dict.fromkeys(TEST_NAMES.get(method_of(t) or "", t) for t in ids))
    return " / ".join(names) if names else "unknown test"


def names(models) -> str:
    return name_list(display_name(m) for m in models)
