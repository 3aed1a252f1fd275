"""Figures of the aggregate stage: metric@k curves (paper Fig. 6) and a critical-difference diagram (Nemenyi),
plus the plotting conventions every figure of the package follows (``save_figure``, ``model_style``,
``plot_model_curves``, ``panel_label``).

Figures are meant to be pasted into a paper: each is written as PNG (embedded in the report), PDF and SVG
(vector, text kept as text) side by side; no title is drawn into the image — the report (or the paper) carries
the caption, and small multiples get only a short panel label such as "(a) Union"; legends sit outside the
axes, below the panels, so they never cover data. With many models (ten to twelve) the ± std bands give way to
thin error bars, dodged along x, so that lines stay apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mmrec_ray.evaluation.statistics import FriedmanResult, seed_summary  # noqa: E402
from mmrec_ray.evaluation.tables import (  # noqa: E402
    METRIC_DISPLAY,
    MODEL_ORDER,
    SUBSET_DISPLAY,
    SUBSET_ORDER,
    display_name,
    order_models,
)
from mmrec_ray.io import atomic_write  # noqa: E402

FORMATS = ("png", "pdf", "svg")
_MARKERS = "osD^v<>ph*X"
MAX_BANDED_MODELS = 4  # beyond this, overlapping ± std bands hide each other: error bars instead
# PDF: TrueType (Type 42) fonts, which publishers accept (Type 3 they often refuse); SVG: text stays editable.
_RC = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none", "font.size": 10}


def model_style(model: str) -> dict:
    """The same colour, marker and line style for a model in every panel and figure; the paper's models get
    the ten tab10 colours, others the light tab20 variants with dashed lines (never a paper model's exact look)."""
    if model in MODEL_ORDER:
        index = MODEL_ORDER.index(model)
        return {"color": plt.get_cmap("tab10")(index % 10), "marker": _MARKERS[index % len(_MARKERS)]}
    index = sum(map(ord, model))
    return {
        "color": plt.get_cmap("tab20")(2 * (index % 10) + 1),
        "marker": _MARKERS[index % len(_MARKERS)],
        "linestyle": "--",
    }


def panel_label(ax, letter: str, text: str) -> None:
    """A small-multiple's identifier ("(a) Union") above its top-left corner: a label, not a title — what the
    figure shows is said in the caption."""
    ax.text(
        0.0, 1.02, f"({letter}) {text}", transform=ax.transAxes, ha="left", va="bottom", fontsize=10,
        fontweight="bold",
    )  # fmt: skip


def plot_model_curves(ax, summary, x: str, handles: dict[str, object], bands: bool | None = None) -> None:
    """One line per model (paper order) of ``summary``'s ``mean`` against column ``x``, with its ± ``std``
    (a band for few models, dodged error bars for many: ``bands`` None decides by ``MAX_BANDED_MODELS``); each
    model's line handle goes into ``handles`` (display name -> line) for a shared legend."""
    models = order_models(summary["model"].unique())
    bands = len(models) <= MAX_BANDED_MODELS if bands is None else bands
    xs = np.sort(summary[x].unique()).astype(float)
    step = float(np.min(np.diff(xs))) if len(xs) > 1 else 1.0
    for position, model in enumerate(models):
        curve = summary[summary["model"] == model].sort_values(x)
        style = model_style(model)
        kwargs = {"label": display_name(model), "linewidth": 1.4, "markersize": 4.5, **style}
        if bands:
            (line,) = ax.plot(curve[x], curve["mean"], **kwargs)
            ax.fill_between(
                curve[x],
                curve["mean"] - curve["std"],
                curve["mean"] + curve["std"],
                color=style["color"],
                alpha=0.12,
            )
        else:
            # Dodge each model by a fraction of the x step so that error bars at one x do not overlap.
            offset = (position - (len(models) - 1) / 2) * 0.5 * step / max(len(models), 1)
            container = ax.errorbar(
                curve[x].to_numpy(dtype=float) + offset,
                curve["mean"],
                yerr=curve["std"],
                capsize=1.5,
                elinewidth=0.7,
                **kwargs,
            )
            line = container.lines[0]
        handles.setdefault(display_name(model), line)


def shared_legend(fig, handles: dict[str, object], max_columns: int = 4) -> None:
    """One legend for all panels, outside and below them (never over data)."""
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="outside lower center",
            ncol=min(max_columns, len(handles)),
            frameon=False,
        )


def figure_titles(fig) -> list[str]:
    """Every title drawn into ``fig`` (suptitle and axes titles); empty for a figure that follows the rules."""
    titles = []
    if fig.get_suptitle():
        titles.append(fig.get_suptitle())
    for ax in fig.axes:
        titles += [ax.get_title(loc) for loc in ("left", "center", "right") if ax.get_title(loc)]
    return titles


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` (PNG) and, beside it, the same figure as PDF and SVG; each atomically.
    Returns the PNG path."""
    path = Path(path)
    try:
        with matplotlib.rc_context(_RC):
            for fmt in FORMATS:

                def write(tmp: Path, fmt: str = fmt) -> None:
                    fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")

                atomic_write(path.with_suffix(f".{fmt}"), write)
    finally:
        plt.close(fig)
    return path


def figure_paths(path: str | Path) -> dict[str, Path]:
    """format -> file of a figure written by ``save_figure`` under ``path``."""
    path = Path(path)
    return {fmt: path.with_suffix(f".{fmt}") for fmt in FORMATS}


def plot_metric_at_k(
    metrics: pd.DataFrame, path: str | Path, metric: str = "map", subsets: Sequence[str] = SUBSET_ORDER
) -> Path:
    """Metric@k for k = 1..K, mean over seeds ± std, one panel per subset, one line per model."""
    summary = seed_summary(metrics[metrics["metric"] == metric])
    subsets = [s for s in subsets if (summary["subset"] == s).any()]
    name = METRIC_DISPLAY.get(metric, metric)
    n_panels = max(len(subsets), 1)
    n_cols = 2 if n_panels > 1 else 1
    n_rows = int(np.ceil(n_panels / n_cols))
    n_models = summary["model"].nunique()
    legend_rows = int(np.ceil(n_models / 4))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(5.2 * n_cols, 3.6 * n_rows + 0.3 * legend_rows),
        squeeze=False,
        layout="constrained",
    )
    handles: dict[str, object] = {}
    for letter, ax, subset in zip("abcdefgh", axes.ravel(), subsets):
        rows = summary[summary["subset"] == subset]
        plot_model_curves(ax, rows, "k", handles)
        panel_label(ax, letter, SUBSET_DISPLAY.get(subset, subset))
        ax.set_xlabel("cut-off k")
        ax.set_ylabel(f"{name}@k")
        ax.set_xticks(sorted(rows["k"].unique()))
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(subsets) :]:
        ax.set_visible(False)
    if not subsets:
        axes[0, 0].text(0.5, 0.5, "no results", ha="center", va="center")
    shared_legend(fig, handles)
    return save_figure(fig, path)


def _cliques(ranks: np.ndarray, critical_difference: float) -> list[tuple[int, int]]:
    """Maximal runs of rank-sorted models whose average ranks differ by less than the CD (not significant)."""
    groups = []
    for start in range(len(ranks)):
        end = start
        while end + 1 < len(ranks) and ranks[end + 1] - ranks[start] < critical_difference:
            end += 1
        if end > start and (not groups or end > groups[-1][1]):
            groups.append((start, end))
    return groups


def plot_cd_diagram(results: Sequence[FriedmanResult], path: str | Path) -> Path:
    """Critical-difference diagram(s) in Demšar's layout: the rank axis on top (1 = best, left), the better half
    of the models labelled on the left and the rest on the right, the Nemenyi CD as a bar, and thick bars joining
    models whose average ranks differ by less than the CD (no significant difference). One panel per result,
    labelled "(a) Union: MAP@3"; the Friedman statistics belong in the caption (the report's Friedman table)."""
    heights = [1.9 + 0.3 * int(np.ceil(len(r.models) / 2)) + 0.12 * len(r.models) for r in results] or [2.0]
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(11.0, sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for letter, ax, result in zip("abcdefgh", axes[:, 0], results):
        k_models = len(result.models)
        order = np.argsort(result.average_ranks, kind="stable")
        ranks = result.average_ranks[order]
        margin = 0.55 * max(k_models - 1, 2)
        left_edge, right_edge = 1 - 0.15 * margin, k_models + 0.15 * margin
        ax.set_xlim(1 - margin, k_models + margin)
        ax.axis("off")
        ax.hlines(0, 1, k_models, color="black", linewidth=1.2)
        for tick in range(1, k_models + 1):
            ax.vlines(tick, 0, 0.1, color="black", linewidth=1)
            ax.text(tick, 0.16, str(tick), ha="center", va="bottom", fontsize=9)
        ax.text((1 + k_models) / 2, 0.55, "average rank (1 = best)", ha="center", va="bottom", fontsize=9)
        ax.hlines(0.75, 1, 1 + result.critical_difference, color="crimson", linewidth=2.5)
        ax.vlines([1, 1 + result.critical_difference], 0.7, 0.8, color="crimson", linewidth=1.5)
        ax.text(
            1 + result.critical_difference + 0.08,
            0.75,
            f"CD = {result.critical_difference:.3f}",
            ha="left",
            va="center",
            fontsize=9,
            color="crimson",
        )
        ax.text(
            1 - margin,
            0.95,
            f"({letter}) {SUBSET_DISPLAY.get(result.subset, result.subset)}: "
            f"{METRIC_DISPLAY.get(result.metric, result.metric)}@{result.k}",
            ha="left",
            va="top",
            fontsize=10,
            fontweight="bold",
        )
        cliques = _cliques(ranks, result.critical_difference)
        for level, (start, end) in enumerate(cliques):
            y = -0.18 - 0.12 * level
            ax.hlines(y, ranks[start] - 0.03, ranks[end] + 0.03, color="dimgray", linewidth=4, alpha=0.8)
        first_label = -0.35 - 0.12 * len(cliques)
        half = int(np.ceil(k_models / 2))
        for position, model_index in enumerate(order):
            rank = result.average_ranks[model_index]
            on_left = position < half
            step = position if on_left else k_models - 1 - position
            y = first_label - 0.3 * step
            edge = left_edge if on_left else right_edge
            style = {k: v for k, v in model_style(result.models[model_index]).items() if k != "linestyle"}
            ax.plot([rank, rank, edge], [0, y, y], color=style["color"], linewidth=1.1)
            ax.plot(rank, 0, linestyle="none", markersize=6, **style)
            ax.text(
                edge - 0.05 if on_left else edge + 0.05,
                y,
                f"{display_name(result.models[model_index])} ({rank:.2f})",
                ha="right" if on_left else "left",
                va="center",
                fontsize=9,
            )
        ax.set_ylim(first_label - 0.3 * (half - 1) - 0.25, 1.0)
    if not results:
        axes[0, 0].text(0.5, 0.5, "fewer than three models: no Friedman test", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.tight_layout()
    return save_figure(fig, path)
