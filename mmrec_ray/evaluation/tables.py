"""Table 3 of the paper: HR@k and MAP@k (k = 3) on the union and the three subsets, one row per model.

Layout (paper, Table 3): rows in the paper's model order (others after); each cell the mean over seeds (the LaTeX
version also ± the sample std over seeds); ▲ / ▼ mark a significant difference from the reference model and its
direction (``marks.reference_marks`` on the rows of ``significance``: by default McNemar over (seed, PE) pairs
clustered by PE for HR and Wilcoxon signed-rank for MAP, both on the quantity the cell shows; McNemar on majority
hits / the paper's one-way ANOVA behind ``hr_test`` / ``map_test``; the caption names the tests used); the best
value of each column in bold; for the proposed models the relative change (%) versus the strongest baseline in
brackets, that baseline named per column in the caption; "-" where a model does not serve the subset.

A model whose outcomes on a subset are identical to an earlier row's (e.g. Late Fusion and Knowledge
Distillation route conversation-only PEs to their Conversation teacher) gets a footnote on those cells, found
from the per-PE outcomes (or, without them, the per-seed metrics) rather than from model names.

Strongest baseline: by default the best baseline *on that column* (per-column maximum over Popular ...
Neutral Imputation). The paper instead uses one model for every column (its caption: "the strongest baseline
(Imputation)" — Neutral Imputation); pass ``strongest_baseline="neutral_imputation"`` to reproduce that.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mmrec_ray.evaluation import marks
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
    """The registered class's ``display_name``, else ``DISPLAY_NAMES``, else the key itself (e.g. a model whose
    predictions were made elsewhere and that no registry entry knows)."""
    from mmrec_ray.models import registry

    try:
        registered = registry.get(model).display_name
    except KeyError:
        registered = None
    return registered or DISPLAY_NAMES.get(model, model)


def order_models(models) -> list[str]:
    """The paper's order first, then any other (e.g. external) models alphabetically."""
    models = {str(m) for m in models}
    known = [m for m in MODEL_ORDER if m in models]
    return known + sorted(models - set(MODEL_ORDER))


def column_name(subset: str, metric: str, k: int) -> str:
    return f"{SUBSET_DISPLAY.get(subset, subset)} {METRIC_DISPLAY.get(metric, metric)}@{k}"


def name_list(names) -> str:
    """'A', 'A and B', 'A, B and C'."""
    names = list(names)
    if not names:
        return "none"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass
class Cell:
    mean: float
    std: float
    n_seeds: int
    significant: bool | None = None  # None: not tested (the reference itself, or no test available)
    p_value: float | None = None
    direction: int = 0  # +1 / -1: significantly better / worse than the reference; 0 otherwise
    relative_change: float | None = None  # percent vs the strongest baseline (proposed models only)
    best: bool = False
    footnote: str | None = None  # letter of the footnote saying which row this cell duplicates


@dataclass
class Footnote:
    letter: str
    model: str
    same_as: str
    subsets: list[str]
    routed: bool  # same_as is one of model's (transitive) dependencies
    evidence: str  # "per-PE" or "per-seed"

    def text(self, k: int) -> str:
        subsets = name_list(SUBSET_DISPLAY.get(s, s) for s in self.subsets)
        head = f"{display_name(self.model)} is identical to {display_name(self.same_as)} on {subsets}"
        if self.evidence == "per-PE":
            why = f"the same hit and AP@{k} on every PE in every seed"
        else:
            why = f"the same HR@{k} and MAP@{k} in every seed"
        if self.routed:
            return (
                f"{head}: the model routes these PEs to {display_name(self.same_as)}, its dependency ({why})."
            )
        return f"{head} ({why})."


@dataclass
class Table3:
    k: int
    reference: str | None
    strongest_baseline: str | None  # None = per column
    models: list[str]
    columns: list[tuple[str, str]]  # (subset, metric)
    cells: dict[tuple[str, str, str], Cell] = field(default_factory=dict)  # (model, subset, metric)
    alpha: float = 0.05
    hr_test: str = DEFAULT_HR_TEST  # the tests behind the marks, named in the caption
    map_test: str = DEFAULT_MAP_TEST
    baselines: dict[tuple[str, str], str] = field(default_factory=dict)  # column -> the model behind (%)
    footnotes: list[Footnote] = field(default_factory=list)

    # ----------------------------------------------------------------------------------- rendering
    def _baseline_text(self) -> str:
        proposed = name_list(display_name(m) for m in self.models if m in PROPOSED)
        if self.strongest_baseline:
            return (
                f"(%) = relative change of the proposed models ({proposed}) w.r.t. "
                f"{display_name(self.strongest_baseline)} on every column."
            )
        by_model: dict[str, list[str]] = {}
        for (subset, metric), model in self.baselines.items():
            by_model.setdefault(model, []).append(column_name(subset, metric, self.k))
        if not by_model:
            return ""
        parts = [f"{display_name(m)} ({', '.join(columns)})" for m, columns in by_model.items()]
        return (
            f"(%) = relative change of the proposed models ({proposed}) w.r.t. the strongest baseline of the "
            f"column: {'; '.join(parts)}."
        )

    def caption(self, style: str = "md") -> str:
        seeds = sorted({c.n_seeds for c in self.cells.values()})
        seed_text = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}" if seeds else "0"
        spread = " ± sample std" if style == "tex" else ""
        parts = [f"Mean{spread} over {seed_text} seed(s) on the test PEs; best of each column in bold."]
        if self.reference:
            parts.append(
                f"{marks.BETTER} / {marks.WORSE} = significantly better / worse than the reference model "
                f"{display_name(self.reference)} on the PEs both serve (HR: {TEST_NAMES[self.hr_test]}; MAP: "
                f"{TEST_NAMES[self.map_test]}; alpha = {self.alpha:g}, each model tested on its own, no "
                f"multiple-comparison correction); no mark = no significant difference."
            )
        baseline = self._baseline_text()
        if baseline:
            parts.append(baseline)
        parts.append("- = the model does not serve this subset.")
        parts += [f"{marks.footnote_marker(f.letter)} {f.text(self.k)}" for f in self.footnotes]
        return " ".join(parts)

    def _cell_text(self, model: str, subset: str, metric: str, style: str) -> str:
        cell = self.cells.get((model, subset, metric))
        if cell is None:
            return "-"
        value = f"{cell.mean:.4f}"
        if cell.best:
            value = f"**{value}**" if style == "md" else rf"\textbf{{{value}}}"
        if style == "tex":
            value += rf"{{\scriptsize$\pm${cell.std:.4f}}}"
        value += marks.mark(cell.direction, style)
        if cell.footnote:
            value += marks.footnote_marker(cell.footnote, style)
        if cell.relative_change is not None and np.isfinite(cell.relative_change):
            percent = f"{cell.relative_change:+.2f}%"
            value += f" ({percent})" if style == "md" else f" ({percent.replace('%', chr(92) + '%')})"
        return value

    def to_markdown(self) -> str:
        header = ["Model"] + [column_name(s, m, self.k) for s, m in self.columns]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + [":---:"] * len(self.columns)) + "|",
        ]
        for model in self.models:
            cells = [self._cell_text(model, s, m, "md") for s, m in self.columns]
            lines.append("| " + " | ".join([display_name(model), *cells]) + " |")
        return "\n".join(lines) + "\n\n" + self.caption("md") + "\n"

    def to_latex(self) -> str:
        """booktabs (``\\toprule`` / ``\\midrule`` / ``\\bottomrule``) and amssymb (▲ / ▼) are needed."""
        subsets = list(dict.fromkeys(s for s, _ in self.columns))
        spec = "l" + "c" * len(self.columns)
        caption = marks.to_latex_text(_latex_escape(self.caption("tex")))
        lines = [
            r"% Requires \usepackage{booktabs} and \usepackage{amssymb}.",
            r"\begin{table*}",
            r"\centering",
            r"\small",
            r"\setlength{\tabcolsep}{3pt}",
            rf"\caption{{Performance results. {caption}}}",
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
        """Wide CSV form: one row per model; per column mean, std, n_seeds, significant, direction (better |
        worse | empty), p_value, relative_change_pct, best and identical_to (empty where the model does not serve
        the subset)."""
        same_as = {(f.model, s): f.same_as for f in self.footnotes for s in f.subsets}
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
                record[f"{prefix}_direction"] = (
                    {1: "better", -1: "worse"}.get(cell.direction, "") if cell else ""
                )
                record[f"{prefix}_p_value"] = cell.p_value if cell and cell.p_value is not None else np.nan
                record[f"{prefix}_relative_change_pct"] = (
                    cell.relative_change if cell and cell.relative_change is not None else np.nan
                )
                record[f"{prefix}_best"] = cell.best if cell else None
                record[f"{prefix}_identical_to"] = same_as.get((model, subset), "") if cell else ""
            records.append(record)
        return pd.DataFrame(records)


def _latex_escape(text: str) -> str:
    for char in ("\\", "&", "%", "$", "#", "_", "{", "}"):
        text = text.replace(char, "\\" + char)
    return text


# --------------------------------------------------------------------------------------------- identical rows
def _dependencies(model: str) -> set[str]:
    """Everything ``model`` builds on (transitively) per the registry; empty for a model it does not know."""
    from mmrec_ray.models import registry

    try:
        return set(registry.dependency_order([model])) - {model}
    except (KeyError, ValueError):
        return set()


def _fingerprints(
    metrics: pd.DataFrame, per_pe: pd.DataFrame | None, k: int
) -> tuple[dict[tuple[str, str], bytes], str]:
    """(model, subset) -> bytes equal exactly when two models' outcomes on the subset are identical; and which
    evidence was used. Per PE when available (equal means could be a coincidence; equal per-PE outcomes are
    not), else the per-seed values."""
    out: dict[tuple[str, str], bytes] = {}
    if per_pe is not None and len(per_pe):
        rows = per_pe[per_pe["k"] == k]
        for model, part in rows.groupby("model", sort=False):
            part = part.sort_values(["seed", "purchase_event_id"], kind="stable")
            for subset in SUBSET_ORDER:
                chosen = part if subset == "union" else part[part["subset"] == subset]
                if chosen.empty:
                    continue
                out[(str(model), subset)] = b"|".join(
                    np.ascontiguousarray(chosen[c].to_numpy(dtype=dtype)).tobytes()
                    for c, dtype in (("seed", np.int64), ("purchase_event_id", np.int64))
                    + (("hit", np.float64), ("ap", np.float64))
                )
        return out, "per-PE"
    rows = metrics[metrics["k"] == k].sort_values(["seed", "metric"], kind="stable")
    for (model, subset), part in rows.groupby(["model", "subset"], sort=False):
        out[(str(model), str(subset))] = repr(
            list(zip(part["seed"].astype(int), part["metric"], part["value"].astype(float)))
        ).encode()
    return out, "per-seed"


def identical_rows(
    table: Table3, metrics: pd.DataFrame, per_pe: pd.DataFrame | None = None
) -> list[Footnote]:
    """Footnotes for every (model, subset) whose outcomes equal those of an earlier row of ``table``."""
    fingerprints, evidence = _fingerprints(metrics, per_pe, table.k)
    groups: dict[tuple[str, str], list[str]] = {}  # (model, same_as) -> subsets
    subsets = list(dict.fromkeys(s for s, _ in table.columns))
    for subset in subsets:
        first_with: dict[bytes, str] = {}
        for model in table.models:
            served = any((model, subset, m) in table.cells for s, m in table.columns if s == subset)
            key = fingerprints.get((model, subset))
            if not served or key is None:
                continue
            if key in first_with:
                groups.setdefault((model, first_with[key]), []).append(subset)
            else:
                first_with[key] = model
    footnotes = []
    for letter, ((model, same_as), where) in zip(marks.FOOTNOTE_LETTERS, groups.items()):
        footnotes.append(Footnote(letter, model, same_as, where, same_as in _dependencies(model), evidence))
    return footnotes


# --------------------------------------------------------------------------------------------- building
def build_table3(
    metrics: pd.DataFrame,
    significance: pd.DataFrame | None = None,
    reference: str | None = "latent_feature",
    k: int = 3,
    strongest_baseline: str | None = None,
    alpha: float = 0.05,
    hr_test: str = DEFAULT_HR_TEST,
    map_test: str = DEFAULT_MAP_TEST,
    per_pe: pd.DataFrame | None = None,
) -> Table3:
    """Table 3 from per-seed metrics (``evaluate``'s metrics.csv) and ``significance_against_reference`` rows.

    strongest_baseline: None = the best baseline on each column; a model name = that model on every column.
    hr_test / map_test: the tests the significance rows were computed with (the caption names them).
    per_pe: ``evaluate``'s per-PE outcomes, to footnote rows identical to another on a subset (without them the
    per-seed metrics decide).
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

    if reference is not None:
        means = {key: cell.mean for key, cell in table.cells.items()}
        for key, found in marks.reference_marks(significance, k, reference, means).items():
            cell = table.cells.get(key)
            if cell is not None:
                cell.significant = found.significant
                cell.p_value = found.p_value
                cell.direction = found.direction

    for subset, metric in columns:
        present = {m: table.cells[(m, subset, metric)] for m in models if (m, subset, metric) in table.cells}
        if not present:
            continue
        best = max(round(c.mean, 4) for c in present.values())
        for cell in present.values():
            cell.best = round(cell.mean, 4) == best
        if strongest_baseline is not None:
            base_model = strongest_baseline if strongest_baseline in present else None
        else:
            baselines = [m for m in present if m in BASELINES]
            base_model = max(baselines, key=lambda m: present[m].mean) if baselines else None
        base = present[base_model].mean if base_model else None
        if base_model and base is not None and base > 0 and any(m in PROPOSED for m in present):
            table.baselines[(subset, metric)] = base_model
        for model, cell in present.items():
            if model in PROPOSED and base is not None and base > 0:
                cell.relative_change = (cell.mean - base) / base * 100.0

    table.footnotes = identical_rows(table, metrics, per_pe)
    for footnote in table.footnotes:
        for subset in footnote.subsets:
            for metric in ("hr", "map"):
                cell = table.cells.get((footnote.model, subset, metric))
                if cell is not None:
                    cell.footnote = footnote.letter
    return table
