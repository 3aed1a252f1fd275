"""Figures and tables to paste into a paper (issue 13, item 9): PDF and SVG beside every PNG, no titles drawn
into the images, legends off the data, legible with twelve models; Table 3 as booktabs LaTeX with ± std; and
identical rows footnoted from the per-PE outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.evaluation import figures
from mmrec_ray.evaluation.analyses import plot_ablation, plot_by_number_of_events
from mmrec_ray.evaluation.analyses.tsne import _plot_tsne
from mmrec_ray.evaluation.statistics import FriedmanResult
from mmrec_ray.evaluation.tables import build_table3
from mmrec_ray.models.registry import PAPER_MODELS

TWELVE = (*PAPER_MODELS, "external_a", "external_b")
SUBSETS = ("union", "conversations_only", "sessions_only", "intersection")


@pytest.fixture
def saved(monkeypatch):
    """Every figure handed to ``save_figure``: (path, titles drawn into it, legends overlapping an axes)."""
    records = []
    original = figures.save_figure

    def inspect(fig, path):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
        overlapping = [
            legend
            for legend in legends
            if any(legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer)) for ax in axes)
        ]
        bands = sum(
            1
            for ax in fig.axes
            for c in ax.collections
            if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")
        )
        records.append(
            {"path": path, "titles": figures.figure_titles(fig), "overlap": overlapping, "bands": bands}
        )
        return original(fig, path)

    monkeypatch.setattr(figures, "save_figure", inspect)
    return records


def _metrics(models=TWELVE) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        (model, seed, subset, metric, k, float(rng.uniform(0.1, 0.6)))
        for model in models
        for seed in (0, 1, 2)
        for subset in SUBSETS
        for metric in ("hr", "map")
        for k in range(1, 6)
    ]
    return pd.DataFrame(rows, columns=["model", "seed", "subset", "metric", "k", "value"])


def _assert_three_formats(png):
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
    svg = png.with_suffix(".svg").read_text()
    assert "<svg" in svg and "<text" in svg  # text kept as text: editable in the paper's tools


def test_every_figure_comes_in_three_formats_without_titles_or_legends_on_data(tmp_path, saved):
    metrics = _metrics()
    figures.plot_metric_at_k(metrics, tmp_path / "map_at_k.png", "map")
    result = FriedmanResult(
        "union", "map", 3, list(TWELVE), np.linspace(1.5, 11.0, 12), 500, 40.0, 1e-6, 0.9, 0.05
    )
    figures.plot_cd_diagram([result, result], tmp_path / "cd_diagram.png")

    ablation = pd.DataFrame(
        [
            {
                "model": model,
                "hidden": hidden,
                "metric": metric,
                "k": 3,
                "n_pes": 40,
                "n_seeds": 2,
                "delta": delta,
                "ci_low": delta - 0.02,
                "ci_high": delta + 0.02,
                "confidence": 0.95,
                "note": "",
            }
            for i, model in enumerate(TWELVE)
            for hidden in ("conversation", "session")
            for metric in ("hr", "map")
            for delta in [(-1) ** i * 0.01 * (i % 4)]
        ]
    )
    plot_ablation(ablation, tmp_path / "ablation.png")

    events = pd.DataFrame(
        [
            (model, seed, n, subset, metric, 3, 0.1 + 0.01 * n + 0.001 * seed, 50, max(0, 30 - 3 * n))
            for model in ("keyword", "latent_feature", "relative_representation")
            for seed in (0, 1)
            for n in range(1, 6)
            for subset in SUBSETS
            for metric in ("hr", "map")
        ],
        columns=["model", "seed", "n_events_kept", "subset", "metric", "k", "value", "n_pes", "n_truncated"],
    )
    plot_by_number_of_events(events, tmp_path / "map_by_events.png", "map")

    rng = np.random.default_rng(0)
    points = pd.DataFrame(
        {
            "model": np.repeat(["keyword", "latent_feature"], 40),
            "subset": np.tile(np.repeat(["conversations_only", "intersection"], 20), 2),
            "x": rng.normal(size=80),
            "y": rng.normal(size=80),
        }
    )
    _plot_tsne(points, tmp_path / "tsne.png", "subset", {"conversations_only": "C", "intersection": "I"})

    assert [r["path"].name for r in saved] == [
        "map_at_k.png",
        "cd_diagram.png",
        "ablation.png",
        "map_by_events.png",
        "tsne.png",
    ]
    for record in saved:
        assert record["titles"] == [], record  # captions belong to the report / the paper
        assert record["overlap"] == [], record  # no legend over bars, lines or points
        _assert_three_formats(record["path"])
    # Twelve models: error bars instead of twelve overlapping ± std bands; three models keep their bands.
    assert saved[0]["bands"] == 0 and saved[3]["bands"] > 0


def test_twelve_models_get_twelve_distinct_styles():
    styles = {
        (tuple(s["color"]), s["marker"], s.get("linestyle", "-")) for s in map(figures.model_style, TWELVE)
    }
    assert len(styles) == 12


def _per_pe() -> pd.DataFrame:
    """Late Fusion copies Conversation on the conversation-only PEs (it routes them there) and differs on the
    intersection; Keyword and Popular have equal HR@3 and MAP@3 per seed but different per-PE outcomes."""
    rows = []
    for seed in (0, 1):
        for pe in range(8):
            subset = "conversations_only" if pe < 4 else "intersection"
            conversation = (pe % 2, 0.5 * (pe % 2))
            rows.append(("conversation", seed, pe, subset, 3, *conversation))
            late_fusion = conversation if subset == "conversations_only" else (1, 1.0)
            rows.append(("late_fusion", seed, pe, subset, 3, *late_fusion))
            rows.append(("popular", seed, pe, subset, 3, (pe // 2) % 2, 0.5 * ((pe // 2) % 2)))
            rows.append(("keyword", seed, pe, subset, 3, 1 - pe % 2, 0.5 * (1 - pe % 2)))
    return pd.DataFrame(rows, columns=["model", "seed", "purchase_event_id", "subset", "k", "hit", "ap"])


def _metrics_of(per_pe: pd.DataFrame) -> pd.DataFrame:
    grouped = per_pe.groupby(["model", "seed", "subset", "k"])
    frames = []
    for metric, column in (("hr", "hit"), ("map", "ap")):
        part = grouped[column].mean().rename("value").reset_index()
        part["metric"] = metric
        frames.append(part)
    return pd.concat(frames, ignore_index=True)[["model", "seed", "subset", "metric", "k", "value"]]


def test_identical_rows_are_found_from_per_pe_outcomes_and_footnoted():
    per_pe = _per_pe()
    table = build_table3(_metrics_of(per_pe), None, None, k=3, per_pe=per_pe)
    assert [(f.model, f.same_as, f.subsets, f.routed) for f in table.footnotes] == [
        ("late_fusion", "conversation", ["conversations_only"], True)
    ]  # not Keyword vs Popular: equal means, different PEs
    md = table.to_markdown()
    late_fusion = next(line for line in md.splitlines() if line.startswith("| Late Fusion |")).split(" | ")
    assert late_fusion[3].endswith("ᵃ") and late_fusion[4].endswith("ᵃ") and "ᵃ" not in late_fusion[7]
    assert (
        "ᵃ Late Fusion is identical to Conversation on Conversations-only: the model routes these PEs to "
        "Conversation, its dependency (the same hit and AP@3 on every PE in every seed)." in md
    )
    assert table.to_frame().set_index("model").loc["late_fusion", "conversations_only_hr@3_identical_to"] == (
        "conversation"
    )
    # Without per-PE outcomes the per-seed metrics decide, and say so: Keyword then matches Popular.
    fallback = build_table3(_metrics_of(per_pe), None, None, k=3)
    assert ("keyword", "popular") in {(f.model, f.same_as) for f in fallback.footnotes}
    assert "the same HR@3 and MAP@3 in every seed" in fallback.to_markdown()


def test_table3_latex_is_booktabs_with_std_over_seeds():
    metrics = _metrics(("popular", "late_fusion", "keyword", "latent_feature"))
    tex = build_table3(metrics, None, "latent_feature", k=3).to_latex()
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    summary = metrics[(metrics["k"] == 3) & (metrics["subset"] == "union") & (metrics["metric"] == "hr")]
    keyword = summary[summary["model"] == "keyword"]["value"]
    cell = next(c for c in tex.split(" & ") if f"{keyword.mean():.4f}" in c)
    assert rf"{{\scriptsize$\pm${keyword.std(ddof=1):.4f}}}" in cell
    assert tex.count(r"$\pm$") >= 4 * 8  # every served cell
    assert "Mean $\\pm$ sample std over 3 seed(s)" in tex
