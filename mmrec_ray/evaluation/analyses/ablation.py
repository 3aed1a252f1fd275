"""(e) Counterfactual modality ablation: ``modality_ablation`` hides the conversations (or the sessions) of the
intersection test PEs and reports paired deltas of HR@k / MAP@k with (1 − alpha) bootstrap CIs:
``ablation/ablation.{csv,md}``, ``ablation/ablation.{png,pdf,svg}``.

One criterion decides what is called a change, everywhere (the CSV's ``significant`` / ``direction``, the table's
▲ / ▼, the figure's solid bars, the report's count): the CI of the paired delta lies entirely above or below zero
(``marks.ci_direction``), without correction for multiple comparisons — like Table 3's marks, each pair on its
own. No p-value is written beside it: a Holm-corrected test next to uncorrected CIs is what made the old report
say "0 of 18 significant" while CIs excluded zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import SUBSET_INTERSECTION, PreparedData
from mmrec_ray.evaluation import marks
from mmrec_ray.evaluation.analyses.common import (
    _say,
    _score_outcomes,
    _write_csv,
    analyses_dir,
    available_models,
    checkpoint_seeds,
    load_fitted,
)
from mmrec_ray.evaluation.analyses.transforms import MODALITY_KIND, hide_modality
from mmrec_ray.evaluation.statistics import bootstrap_means
from mmrec_ray.evaluation.tables import METRIC_DISPLAY, display_name, order_models
from mmrec_ray.io import atomic_write_text
from mmrec_ray.models import registry

ABLATION_COLUMNS = [
    "model",
    "hidden",
    "metric",
    "k",
    "n_pes",
    "n_seeds",
    "full",
    "ablated",
    "delta",
    "ci_low",
    "ci_high",
    "confidence",
    "significant",
    "direction",
    "note",
]


def with_ci_marks(frame: pd.DataFrame) -> pd.DataFrame:
    """``significant`` and ``direction`` (+1 / -1 / 0) from the CI columns: the one criterion of the ablation
    (also applied to CSVs written before it, whose ``significant`` came from a Holm-corrected test)."""
    frame = frame.copy()
    frame["direction"] = [
        marks.ci_direction(low, high) for low, high in zip(frame["ci_low"], frame["ci_high"])
    ]
    frame["significant"] = frame["direction"] != 0
    return frame


def modality_ablation(
    run_dir: str | Path,
    models: Sequence[str] | None = None,
    k: int = 3,
    alpha: float = 0.05,
    bootstrap_resamples: int = 2000,
    seed: int = 0,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Counterfactual modality ablation on trained models: for every intersection test PE, hide its
    conversations (or its sessions) at test time and compare with the full PE.

    Per model and hidden modality: HR@k / MAP@k with and without the modality (mean over seeds of the per-PE
    outcomes), the paired delta (ablated − full) with a (1 − alpha) percentile bootstrap CI over PEs, and
    ``significant`` / ``direction`` from that CI (module docstring). A model that does not serve the ablated PEs
    (e.g. Conversation without conversations) is listed with ``note``. ``models`` None = every reported model
    with a checkpoint. Writes ``analyses/ablation/ablation.{csv,md}`` and the figure.
    """
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    models = available_models(run_dir, models if models is not None else registry.names())
    inter = np.flatnonzero(np.asarray(data.is_test) & (np.asarray(data.subset) == SUBSET_INTERSECTION))
    out_dir = analyses_dir(run_dir) / "ablation"
    confidence = 1.0 - alpha
    if len(inter) == 0 or not models:
        frame = pd.DataFrame(columns=ABLATION_COLUMNS)
        _write_csv(out_dir / "ablation.csv", frame)
        say("analyses: ablation skipped (no intersection test PEs or no fitted model)")
        return frame
    store = FeatureStore(data, device="cpu")
    mask = np.zeros(data.num_pes, dtype=bool)
    mask[inter] = True
    ablated_stores = {m: FeatureStore(hide_modality(data, m, mask), device="cpu") for m in MODALITY_KIND}
    rows = []
    for name in order_models(models):
        seeds = checkpoint_seeds(run_dir, name)
        per_seed = {"full": [], **{m: [] for m in MODALITY_KIND}}
        for s in seeds:
            recommender = load_fitted(run_dir, name, s, store, training)
            per_seed["full"].append(_score_outcomes(data, inter, recommender.predict(store, inter), k))
            for modality, ablated_store in ablated_stores.items():
                scores = recommender.predict(ablated_store, inter)
                per_seed[modality].append(_score_outcomes(ablated_store.data, inter, scores, k))
        full_served = np.all([o[0] for o in per_seed["full"]], axis=0)
        for modality in MODALITY_KIND:
            served = full_served & np.all([o[0] for o in per_seed[modality]], axis=0)
            base = {
                "model": name,
                "hidden": modality,
                "k": k,
                "n_seeds": len(seeds),
                "n_pes": int(served.sum()),
                "confidence": confidence,
            }
            if not served.any():
                for metric in ("hr", "map"):
                    rows.append(
                        {
                            **base,
                            "metric": metric,
                            "note": f"does not serve intersection PEs without {modality}s",
                        }
                    )
                continue
            hits_full = np.mean([o[1] for o in per_seed["full"]], axis=0)[served]
            hits_ablated = np.mean([o[1] for o in per_seed[modality]], axis=0)[served]
            ap_full = np.mean([o[2] for o in per_seed["full"]], axis=0)[served]
            ap_ablated = np.mean([o[2] for o in per_seed[modality]], axis=0)[served]
            for metric, full, ablated in (("hr", hits_full, hits_ablated), ("map", ap_full, ap_ablated)):
                low, high = bootstrap_means(ablated - full, bootstrap_resamples, confidence, seed)
                rows.append(
                    {
                        **base,
                        "metric": metric,
                        "full": float(full.mean()),
                        "ablated": float(ablated.mean()),
                        "delta": float((ablated - full).mean()),
                        "ci_low": float(low),
                        "ci_high": float(high),
                        "note": "",
                    }
                )
    frame = with_ci_marks(pd.DataFrame(rows).reindex(columns=ABLATION_COLUMNS))
    frame["note"] = frame["note"].fillna("")
    _write_csv(out_dir / "ablation.csv", frame)
    atomic_write_text(out_dir / "ablation.md", ablation_markdown(frame, alpha, len(inter)))
    plot_ablation(frame, out_dir / "ablation.png")
    say(f"analyses: modality ablation on {len(inter)} intersection test PEs written to {out_dir}")
    return frame


def _confidence(frame: pd.DataFrame, alpha: float) -> float:
    if "confidence" in frame and frame["confidence"].notna().any():
        return float(frame["confidence"].dropna().iloc[0])
    return 1.0 - alpha


def ablation_caption(frame: pd.DataFrame, alpha: float = 0.05, n_intersection: int | None = None) -> str:
    """What the ablation table shows and the one criterion behind its marks."""
    n_text = f" ({n_intersection} PEs)" if n_intersection is not None else ""
    level = f"{_confidence(frame, alpha):.0%}"
    return (
        f"Counterfactual modality ablation on the intersection test PEs{n_text}: the trained models (mean over "
        f"seeds) predict with all events (full) and with the conversations or the sessions hidden. Δ = hidden − "
        f"full with a {level} percentile bootstrap CI over PEs; {marks.BETTER} / {marks.WORSE} = the CI excludes "
        f"zero and lies above / below it (hiding the modality raises / lowers the metric), each pair on its "
        f"own without multiple-comparison correction; no mark = the CI contains zero."
    )


def ablation_markdown(frame: pd.DataFrame, alpha: float = 0.05, n_intersection: int | None = None) -> str:
    """The ablation as a Markdown table: one row per (model, hidden modality), HR and MAP full → hidden, Δ with
    its CI and the CI's mark (``with_ci_marks``; the CSV's own ``significant`` column is not trusted, so an
    old CSV renders by today's criterion)."""
    if frame.empty:
        return "No ablation results.\n"
    frame = with_ci_marks(frame)
    k = int(frame["k"].iloc[0])
    level = f"{_confidence(frame, alpha):.0%}"
    header = [
        "Model",
        "Hidden",
        f"HR@{k} full",
        f"HR@{k} hidden",
        f"Δ HR@{k} [{level} CI]",
        f"MAP@{k} full",
        f"MAP@{k} hidden",
        f"Δ MAP@{k} [{level} CI]",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---", "---"] + [":---:"] * 6) + "|"]
    for (model, hidden), part in frame.groupby(["model", "hidden"], sort=False):
        cells = [display_name(model), f"{hidden}s"]
        for metric in ("hr", "map"):
            row = part[part["metric"] == metric]
            if row.empty or pd.isna(row["delta"].iloc[0]):
                note = row["note"].iloc[0] if len(row) else ""
                cells += ["-", "-", note if isinstance(note, str) and note else "-"]
                continue
            r = row.iloc[0]
            cells += [
                f"{r['full']:.4f}",
                f"{r['ablated']:.4f}",
                f"{r['delta']:+.4f}{marks.symbol(int(r['direction']))} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + ablation_caption(frame, alpha, n_intersection) + "\n"


def plot_ablation(frame: pd.DataFrame, path: str | Path) -> Path:
    """Paired deltas (hidden − full) per model with their bootstrap CIs; one panel per metric. Bars whose CI
    contains zero are drawn faded (the table's criterion); the legend sits below the panels, never on a bar."""
    import matplotlib.pyplot as plt

    from mmrec_ray.evaluation.figures import panel_label, save_figure, shared_legend

    frame = with_ci_marks(frame) if len(frame) else frame
    done = frame[frame["delta"].notna()]
    k = int(frame["k"].iloc[0]) if len(frame) else 3
    level = f"{_confidence(frame, 0.05):.0%}" if len(frame) else "95%"
    models = order_models(frame["model"].unique())
    fig, axes = plt.subplots(
        1, 2, figsize=(11, 0.42 * max(len(models), 3) + 1.6), squeeze=False, layout="constrained"
    )
    offsets = {"conversation": -0.2, "session": 0.2}
    colours = {"conversation": "tab:orange", "session": "tab:blue"}
    handles: dict[str, object] = {}
    for letter, ax, metric in zip("ab", axes[0], ("hr", "map")):
        for hidden in MODALITY_KIND:
            part = done[(done["metric"] == metric) & (done["hidden"] == hidden)].set_index("model")
            present = [m for m in models if m in part.index]
            if not present:
                continue
            ys = np.array([models.index(m) + offsets[hidden] for m in present])
            deltas = part.loc[present, "delta"].to_numpy(dtype=float)
            solid = part.loc[present, "direction"].to_numpy() != 0
            errors = np.vstack(
                [
                    deltas - part.loc[present, "ci_low"].to_numpy(dtype=float),
                    part.loc[present, "ci_high"].to_numpy(dtype=float) - deltas,
                ]
            )
            bars = ax.barh(
                ys, deltas, height=0.38, color=colours[hidden], alpha=0.85, label=f"{hidden}s hidden"
            )
            for bar, keep in zip(bars, solid):
                if not keep:
                    bar.set_alpha(0.3)
            handles.setdefault(f"{hidden}s hidden", bars)
            ax.errorbar(
                deltas, ys, xerr=np.maximum(errors, 0), fmt="none", ecolor="black", capsize=3, linewidth=1
            )
        skipped = frame[(frame["metric"] == metric) & frame["delta"].isna()]
        for row in skipped.itertuples():
            if row.model in models:
                y = models.index(row.model) + offsets[row.hidden]
                ax.annotate(
                    f"not served without {row.hidden}s",
                    (0, y),
                    xytext=(4, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=7,
                    color="dimgray",
                )
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels([display_name(m) for m in models])
        ax.invert_yaxis()
        ax.set_xlabel(f"Δ {METRIC_DISPLAY[metric]}@{k} (hidden − full), {level} bootstrap CI")
        panel_label(ax, letter, f"{METRIC_DISPLAY[metric]}@{k}")
        ax.grid(True, axis="x", alpha=0.3)
    shared_legend(fig, handles)
    return save_figure(fig, path)
