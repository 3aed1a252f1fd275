"""The significance marks every table and the report's summary share (issue 13, item 4).

A mark is read from one place only: Table 3 and the summary both call ``reference_marks`` on the rows of
``significance.csv`` (written once by ``aggregate``); the ablation's table, figure and summary all call
``ci_direction`` on its CI columns. A sentence and a cell therefore cannot disagree about what is significant,
nor about its direction.

▲ = significantly better (higher HR / MAP) than the comparison, ▼ = significantly worse; no mark = no
significant difference. Footnote markers are superscript letters, which do not read as digits of a value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BETTER = "▲"
WORSE = "▼"
LATEX = {BETTER: r"$^{\blacktriangle}$", WORSE: r"$^{\blacktriangledown}$"}
LATEX_INLINE = {BETTER: r"$\blacktriangle$", WORSE: r"$\blacktriangledown$"}
_SUPERSCRIPT = dict(zip("abcdefghijklmnoprstuvwxyz", "ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻ", strict=True))
FOOTNOTE_LETTERS = tuple(_SUPERSCRIPT)  # no "q": Unicode has no superscript q


def symbol(direction: int) -> str:
    """▲ for +1, ▼ for -1, '' for 0 (not significant)."""
    return BETTER if direction > 0 else WORSE if direction < 0 else ""


def mark(direction: int, style: str = "md") -> str:
    text = symbol(direction)
    return LATEX.get(text, "") if style == "tex" and text else text


def footnote_marker(letter: str, style: str = "md") -> str:
    return rf"\textsuperscript{{{letter}}}" if style == "tex" else _SUPERSCRIPT[letter]


def to_latex_text(text: str) -> str:
    """Marks and footnote markers of a caption (already LaTeX-escaped otherwise) as LaTeX."""
    for unicode_mark, latex in LATEX_INLINE.items():
        text = text.replace(unicode_mark, latex)
    for letter, superscript in _SUPERSCRIPT.items():
        text = text.replace(superscript, rf"\textsuperscript{{{letter}}}")
    return text.replace("±", r"$\pm$").replace("−", "-").replace("Δ", r"$\Delta$")


@dataclass(frozen=True)
class Mark:
    significant: bool
    direction: int  # +1 better, -1 worse than the reference; 0 when not significant
    p_value: float
    test: str


def reference_marks(
    significance: pd.DataFrame | None,
    k: int,
    reference: str | None = None,
    means: dict[tuple[str, str, str], float] | None = None,
) -> dict[tuple[str, str, str], Mark]:
    """(model, subset, metric) -> Mark from ``significance_against_reference`` rows at cut-off ``k``.

    The direction is that of the tested quantities (``value`` vs ``reference_value``: what the test compared);
    ``means`` (model, subset, metric) -> shown mean is the fallback for rows without them (older CSVs).
    """
    out: dict[tuple[str, str, str], Mark] = {}
    if significance is None or not len(significance):
        return out
    rows = significance[significance["k"] == k]
    if reference is not None:
        rows = rows[rows["reference"] == reference]
    has_values = {"value", "reference_value"} <= set(rows.columns)
    for row in rows.to_dict("records"):
        key = (str(row["model"]), str(row["subset"]), str(row["metric"]))
        significant = bool(row["significant"])
        difference = np.nan
        if has_values:
            difference = float(row["value"]) - float(row["reference_value"])
        if not np.isfinite(difference) and means is not None:
            reference_key = (str(row["reference"]), key[1], key[2])
            if key in means and reference_key in means:
                difference = means[key] - means[reference_key]
        direction = int(np.sign(difference)) if significant and np.isfinite(difference) else 0
        out[key] = Mark(significant, direction, float(row["p_value"]), str(row.get("test", "")))
    return out


def ci_direction(ci_low: float, ci_high: float) -> int:
    """+1 / -1 when a confidence interval lies entirely above / below zero, else 0 (the ablation's criterion)."""
    if ci_low is None or ci_high is None or not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return 0
    return 1 if ci_low > 0 else -1 if ci_high < 0 else 0
