"""Figures of the aggregate stage: metric@k curves (paper Fig. 6) and a critical-difference diagram (Nemenyi).

matplotlib with the Agg backend (no display needed); every figure has labelled axes, a legend and a title, and
is written atomically as PNG.
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

_MARKERS = "osD^v<>ph*X"


def model_style(model: str) -> dict:
    """The same colour and marker for a model in every panel and figure."""
    index = MODEL_ORDER.index(model) if model in MODEL_ORDER else len(MODEL_ORDER) + sum(map(ord, model)) % 10
    colour = plt.get_cmap("tab10" if index < 10 else "tab20")(index % 10 if index < 10 else index % 20)
    return {"color": colour, "marker": _MARKERS[index % len(_MARKERS)]}


def plot_model_curves(ax, summary, x: str, handles: dict[str, object]) -> None:
    """One line per model (paper order) of ``summary``'s ``mean`` against column ``x``, with a ± ``std``
    band; each model's line handle goes into ``handles`` (display name -> line) for a shared legend."""
    for model in order_models(summary["model"].unique()):
        curve = summary[summary["model"] == model].sort_values(x)
        style = model_style(model)
        (line,) = ax.plot(curve[x], curve["mean"], label=display_name(model), linewidth=1.6, **style)
        ax.fill_between(
            curve[x],
            curve["mean"] - curve["std"],
            curve["mean"] + curve["std"],
            color=style["color"],
            alpha=0.12,
        )
        handles.setdefault(display_name(model), line)


def _save(fig, path: str | Path) -> Path:
    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")

    try:
        return atomic_write(path, write)
    finally:
        plt.close(fig)


def plot_metric_at_k(
    metrics: pd.DataFrame, path: str | Path, metric: str = "map", subsets: Sequence[str] = SUBSET_ORDER
) -> Path:
    """Metric@k for k = 1..K, mean over seeds (band = ± std), one panel per subset, one line per model."""
    summary = seed_summary(metrics[metrics["metric"] == metric])
    subsets = [s for s in subsets if (summary["subset"] == s).any()]
    name = METRIC_DISPLAY.get(metric, metric)
    n_panels = max(len(subsets), 1)
    n_cols = 2 if n_panels > 1 else 1
    n_rows = int(np.ceil(n_panels / n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(6.0 * n_cols, 4.2 * n_rows), squeeze=False)
    handles: dict[str, object] = {}
    for ax, subset in zip(axes.ravel(), subsets):
        rows = summary[summary["subset"] == subset]
        plot_model_curves(ax, rows, "k", handles)
        ax.set_title(SUBSET_DISPLAY.get(subset, subset))
        ax.set_xlabel("cut-off k")
        ax.set_ylabel(f"{name}@k")
        ax.set_xticks(sorted(rows["k"].unique()))
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(subsets) :]:
        ax.set_visible(False)
    if not subsets:
        axes[0, 0].text(0.5, 0.5, "no results", ha="center", va="center")
    fig.suptitle(f"{name}@k on the test PEs (mean over seeds, band = ± 1 std)")
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="lower center",
            ncol=min(5, len(handles)),
            bbox_to_anchor=(0.5, -0.02),
            frameon=False,
        )
        fig.tight_layout(rect=(0, 0.06 + 0.03 * ((len(handles) - 1) // 5), 1, 0.97))
    return _save(fig, path)


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
    models whose average ranks differ by less than the CD (no significant difference)."""
    heights = [1.9 + 0.3 * int(np.ceil(len(r.models) / 2)) + 0.12 * len(r.models) for r in results] or [2.0]
    fig, axes = plt.subplots(
        len(heights), 1, figsize=(11.0, sum(heights)), squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    for ax, result in zip(axes[:, 0], results):
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
            style = model_style(result.models[model_index])
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
        ax.set_title(
            f"{SUBSET_DISPLAY.get(result.subset, result.subset)}: {METRIC_DISPLAY.get(result.metric, result.metric)}"
            f"@{result.k}, Friedman chi2 = {result.statistic:.1f}, p = {result.p_value:.2g}, "
            f"N = {result.n_blocks} PEs, alpha = {result.alpha:g}",
            fontsize=10,
        )
    if not results:
        axes[0, 0].text(0.5, 0.5, "fewer than three models: no Friedman test", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.suptitle("Critical-difference diagram (Friedman test, Nemenyi post-hoc)", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / sum(heights)))
    return _save(fig, path)
