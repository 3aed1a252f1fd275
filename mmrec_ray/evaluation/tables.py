"""Table 3 of the paper: HR@k and MAP@k (k = 3) on the union and the three subsets, one row per model.

Layout (paper, Table 3): rows in the paper's model order (others after); each cell the mean over seeds; "*" marks
a significant difference from the reference model (the tests of ``significance``: by default McNemar over
(seed, PE) pairs clustered by PE for HR and Wilcoxon signed-rank for MAP, both on the quantity the cell shows;
McNemar on majority hits / the paper's one-way ANOVA behind ``hr_test`` / ``map_test``; the caption names the
tests used); the best value of each column in bold; for the proposed models the relative change (%) versus the
strongest baseline in brackets; "-" where a model does not serve the subset.

Strongest baseline: by default the best baseline *on that column* (per-column maximum over Popular ...
Neutral Imputation). The paper instead uses one model for every column (its caption: "the strongest baseline
(Imputation)" — Neutral Imputation); pass ``strongest_baseline="neutral_imputation"`` to reproduce that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmrec_ray.evaluation.significance import (
    DEFAULT_HR_TEST,
    DEFAULT_MAP_TEST,
    TEST_NAMES,
    check_methods,
)
from mmrec_ray.evaluation.statistics import seed_summary
from mmrec_ray.models.registry import PAPER_BASELINES, PAPER_MODELS, PAPER_PROPOSED

BASELINES = PAPER_BASELINES
PROPOSED = PAPER_PROPOSED
MODEL_ORDER = PAPER_MODELS
DISPLAY_NAMES = {
    "popular": "Popular",
    "conversation": "Conversation",
    "session": "Web Session",
    "late_fusion": "Late Fusion",
    "knowledge_distillation": "Knowledge Distillation",
    "generative_imputation": "Generative Imputation",
    "neutral_imputation": "Neutral Imputation",
    "keyword": "Keyword",
    "latent_feature": "Latent Feature",
    "relative_representation": "Relative Representation",
}
SUBSET_ORDER = ("union", "conversations_only", "sessions_only", "intersection")
SUBSET_DISPLAY = {
    "union": "Union",
    "conversations_only": "Conversations-only",
    "sessions_only": "Web sessions-only",
    "intersection": "Intersection",
}
METRIC_DISPLAY = {"hr": "HR", "map": "MAP"}


def display_name(model: str) -> str:
    return DISPLAY_NAMES.get(model, model)


def order_models(models) -> list[str]:
    """The paper's order first, then any other (e.g. external) models alphabetically."""
    models = {str(m) for m in models}
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(models - set(MODEL_ORDER))


@dataclass
class Cell:
    mean: float
    std: float
    n_seeds: int
    significant: bool | None = None  # None: not tested (the reference itself, or no test available)
    p_value: float | None = None
    relative_change: float | None = None  # percent vs the strongest baseline (proposed models only)
    best: bool = False


@dataclass
class Table3:
    k: int
    reference: str | None
    strongest_baseline: str | None  # None = per column
    models: list[str]
    columns: list[tuple[str, str]]  # (subset, metric)
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)  # (model, subset, metric)
    alpha: float = 0.05
    hr_test: str = DEFAULT_HR_TEST  # the tests behind the stars, named in the caption
    map_test: str = DEFAULT_MAP_TEST

    # ----------------------------------------------------------------------------------- rendering
    def _caption(self) -> str:
        seeds = sorted({c.n_seeds for c in self.cells.values()})
        seed_text = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
        parts = [f"Mean over {seed_text} seed(s) on the test PEs; best of each column in bold."]
        if self.reference:
            parts.append(
                f"* = significantly different from {display_name(self.reference)} "
                f"(HR: {TEST_NAMES[self.hr_test]}; MAP: {TEST_NAMES[self.map_test]}; alpha = {self.alpha:g})."
            )
        if self.strongest_baseline:
            parts.append(
                f"(%) = relative change w.r.t. the strongest baseline ({display_name(self.strongest_baseline)})."
            )
        else:
            parts.append("(%) = relative change w.r.t. the strongest baseline of each column.")
        parts.append("- = the model does not serve this subset.")
        return " ".join(parts)

    def _cell_text(self, model: str, subset: str, metric: str, style: str) -> str:
        cell = self.cells.get((model, subset, metric))
        if cell is None:
            return "-"
        value = f"{cell.mean:.4f}"
        if cell.best:
            value = f"**{value}**" if style == "md" else rf"\textbf{{{value}}}"
        if cell.significant:
            value += r"\*" if style == "md" else r"$^{*}$"
        if cell.relative_change is not None and np.isfinite(cell.relative_change):
            percent = f"{cell.relative_change:+.2f}%"
            value += f" ({percent})" if style == "md" else f" ({percent.replace('%', chr(92) + '%')})"
        return value

    def to_markdown(self) -> str:
        header = ["Model"] + [
            f"{SUBSET_DISPLAY.get(s, s)} {METRIC_DISPLAY[m]}@{self.k}" for s, m in self.columns
        ]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + [":---:"] * len(self.columns)) + "|",
        ]
        for model in self.models:
            cells = [self._cell_text(model, s, m, "md") for s, m in self.columns]
            lines.append("| " + " | ".join([display_name(model), *cells]) + " |")
        return "\n".join(lines) + "\n\n" + self._caption() + "\n"

    def to_latex(self) -> str:
        subsets = list(dict.fromkeys(s for s, _ in self.columns))
        spec = "l" + "c" * len(self.columns)
        lines = [
            r"\begin{table*}",
            r"\centering",
            rf"\caption{{Performance results. {self._caption().replace('%', chr(92) + '%')}}}",
            r"\label{tab:performance}",
            rf"\begin{{tabular}}{{{spec}}}",
            r"\toprule",
        ]
        group = ["Model"]
        rules = []
        col = 2
        for subset in subsets:
            width = sum(1 for s, _ in self.columns if s == subset)
            group.append(rf"\multicolumn{{{width}}}{{c}}{{{SUBSET_DISPLAY.get(subset, subset)}}}")
            rules.append(rf"\cmidrule(lr){{{col}-{col + width - 1}}}")
            col += width
        lines.append(" & ".join(group) + r" \\")
        lines.append(" ".join(rules))
        lines.append(" & ".join([""] + [f"{METRIC_DISPLAY[m]}@{self.k}" for _, m in self.columns]) + r" \\")
        lines.append(r"\midrule")
        for model in self.models:
            if model == PROPOSED[0] and any(m in BASELINES for m in self.models):
                lines.append(r"\midrule")
            cells = [self._cell_text(model, s, m, "tex") for s, m in self.columns]
            lines.append(" & ".join([_latex_escape(display_name(model)), *cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table*}"]
        return "\n".join(lines) + "\n"

    def to_frame(self) -> pd.DataFrame:
        """Wide CSV form: one row per model; per column mean, std, n_seeds, significant, p_value,
        relative_change_pct and best (empty where the model does not serve the subset)."""
        records = []
        for model in self.models:
            record: dict[str, object] = {"model": model, "display_name": display_name(model)}
            for subset, metric in self.columns:
                prefix = f"{subset}_{metric}@{self.k}"
                cell = self.cells.get((model, subset, metric))
                record[f"{prefix}_mean"] = cell.mean if cell else np.nan
                record[f"{prefix}_std"] = cell.std if cell else np.nan
                record[f"{prefix}_n_seeds"] = cell.n_seeds if cell else np.nan
                record[f"{prefix}_significant"] = cell.significant if cell else None
                record[f"{prefix}_p_value"] = cell.p_value if cell else np.nan
                record[f"{prefix}_relative_change_pct"] = (
                    cell.relative_change if cell and cell.relative_change is not None else np.nan
                )
                record[f"{prefix}_best"] = cell.best if cell else None
            records.append(record)
        return pd.DataFrame(records)


def _latex_escape(text: str) -> str:
    for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


def build_table3(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None = None,
    reference: str | None = "latent_feature",
    k: int = 3,
    strongest_baseline: str | None = None,
    alpha: float = 0.05,
    hr_test: str = DEFAULT_HR_TEST,
    map_test: str = DEFAULT_MAP_TEST,
) -> Table3:
    """Table 3 from per-seed metrics (``evaluate``'s metrics.csv) and ``significance_against_reference`` rows.

    strongest_baseline: None = the best baseline on each column; a model name = that model on every column.
    hr_test / map_test: the tests the significance rows were computed with (the caption names them).
    """
    check_methods(hr_test, map_test)
    summary = seed_summary(metrics[metrics["k"] == k])
    models = order_models(summary["model"].unique())
    columns = [(s, m) for s in SUBSET_ORDER for m in ("hr", "map")]
    table = Table3(
        k=k,
        reference=reference,
        strongest_baseline=strongest_baseline,
        models=models,
        columns=columns,
        alpha=alpha,
        hr_test=hr_test,
        map_test=map_test,
    )
    for row in summary.itertuples(index=False):
        if (row.subset, row.metric) in columns:
            table.cells[(row.model, row.subset, row.metric)] = Cell(
                float(row.mean), float(row.std), int(row.n_seeds)
            )

    if significance is not None and reference is not None and len(significance):
        rows = significance[(significance["k"] == k) & (significance["reference"] == reference)]
        for row in rows.itertuples(index=False):
            cell = table.cells.get((row.model, row.subset, row.metric))
            if cell is not None:
                cell.significant = bool(row.significant)
                cell.p_value = float(row.p_value)

    for subset, metric in columns:
        present = {m: table.cells[(m, subset, metric)] for m in models if (m, subset, metric) in table.cells}
        if not present:
            continue
        best = max(round(c.mean, 4) for c in present.values())
        for cell in present.values():
            cell.best = round(cell.mean, 4) == best
        if strongest_baseline is not None:
            base_cell = present.get(strongest_baseline)
            base = base_cell.mean if base_cell else None
        else:
            baseline_means = [c.mean for m, c in present.items() if m in BASELINES]
            base = max(baseline_means) if baseline_means else None
        for model, cell in present.items():
            if model in PROPOSED and base is not None and base > 0:
                cell.relative_change = (cell.mean - base) / base * 100.0
    return table
