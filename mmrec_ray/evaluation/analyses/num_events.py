"""(b) Metrics by number of events (paper 7.1, Fig. 7): ``number_of_events`` — the trained checkpoints on test
PEs truncated to their last n = 1..max events (no retraining): ``num_events/metrics.csv``,
``num_events/{map,hr}_by_events.{png,pdf,svg}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import PreparedData
from mmrec_ray.errors import MmrecError
from mmrec_ray.evaluation.analyses.common import (
    JOINT_MODELS,
    _say,
    _score_outcomes,
    _subset_names,
    _write_csv,
    analyses_dir,
    available_models,
    checkpoint_seeds,
    load_fitted,
)
from mmrec_ray.evaluation.analyses.transforms import keep_most_recent
from mmrec_ray.evaluation.evaluate import UNION
from mmrec_ray.evaluation.tables import METRIC_DISPLAY, SUBSET_DISPLAY, SUBSET_ORDER


def number_of_events(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    max_events: int = 10,
    k: int = 3,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """MAP@k and HR@k of the trained checkpoints when every test PE keeps only its ``n`` most recent events,
    n = 1..max_events (paper Fig. 7; no retraining). Writes ``analyses/num_events/metrics.csv`` (model, seed,
    n_events_kept, subset, metric, k, value, n_pes, n_truncated) and ``analyses/num_events/map_by_events.png``."""
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    training = training or TrainingConfig(device="cpu")
    models = available_models(run_dir, models)
    if not models:
        raise MmrecError(f"{run_dir / 'checkpoints'}: no checkpoint of {list(models)}; fit them first")
    test = data.test_indices()
    lengths = np.asarray(data.n_events)[test]
    subsets = _subset_names(data, test)
    max_events = min(int(max_events), int(data.max_events))
    base_store = FeatureStore(data, device="cpu")
    loaded = {
        (m, s): load_fitted(run_dir, m, s, base_store, training)
        for m in models
        for s in checkpoint_seeds(run_dir, m)
    }
    rows = []
    for n in range(1, max_events + 1):
        truncated = keep_most_recent(data, n)
        store = FeatureStore(truncated, device="cpu")
        for (model, seed), recommender in loaded.items():
            scores = recommender.predict(store, test)
            served, hits, ap = _score_outcomes(truncated, test, scores, k)
            for subset in SUBSET_ORDER:
                mask = served & (True if subset == UNION else subsets == subset)
                if not mask.any():
                    continue
                n_truncated = int((lengths[mask] > n).sum())
                for metric, values in (("hr", hits), ("map", ap)):
                    rows.append(
                        (
                            model,
                            seed,
                            n,
                            subset,
                            metric,
                            k,
                            float(values[mask].mean()),
                            int(mask.sum()),
                            n_truncated,
                        )
                    )
    columns = ["model", "seed", "n_events_kept", "subset", "metric", "k", "value", "n_pes", "n_truncated"]
    frame = pd.DataFrame(rows, columns=columns)
    out_dir = analyses_dir(run_dir) / "num_events"
    _write_csv(out_dir / "metrics.csv", frame)
    plot_by_number_of_events(frame, out_dir / "map_by_events.png", "map")
    plot_by_number_of_events(frame, out_dir / "hr_by_events.png", "hr")
    say(f"analyses: metrics by number of events (n = 1..{max_events}) written to {out_dir}")
    return frame


def plot_by_number_of_events(frame: pd.DataFrame, path: str | Path, metric: str = "map") -> Path:
    """Fig. 7: metric@k against the number of most recent events kept; one panel per subset, one line per model
    (mean over seeds ± std). No title: the caption says what is shown."""
    import matplotlib.pyplot as plt

    from mmrec_ray.evaluation.figures import panel_label, plot_model_curves, save_figure, shared_legend

    rows = frame[frame["metric"] == metric]
    k = int(rows["k"].iloc[0]) if len(rows) else 3
    summary = rows.groupby(["model", "subset", "n_events_kept"])["value"].agg(["mean", "std"]).reset_index()
    summary["std"] = summary["std"].fillna(0.0)
    subsets = [s for s in SUBSET_ORDER if (summary["subset"] == s).any()]
    legend_rows = int(np.ceil(summary["model"].nunique() / 4))
    fig, axes = plt.subplots(
        2, 2, figsize=(10.4, 7.6 + 0.3 * legend_rows), squeeze=False, layout="constrained"
    )
    handles = {}
    for letter, ax, subset in zip("abcd", axes.ravel(), subsets):
        part = summary[summary["subset"] == subset]
        plot_model_curves(ax, part, "n_events_kept", handles)
        panel_label(ax, letter, SUBSET_DISPLAY.get(subset, subset))
        ax.set_ylabel(f"{METRIC_DISPLAY[metric]}@{k}")
        # Second tick line: the share of the subset's PEs that lose events at this n (flat lines there mean
        # little was cut, not that history does not matter).
        shares = rows[rows["subset"] == subset].groupby("n_events_kept")[["n_truncated", "n_pes"]].first()
        ticks = sorted(part["n_events_kept"].unique())
        ax.set_xticks(ticks)
        ax.set_xticklabels(
            [f"{n}\n{shares.loc[n, 'n_truncated'] / max(shares.loc[n, 'n_pes'], 1):.0%}" for n in ticks]
        )
        ax.set_xlabel("most recent events kept (n) / share of PEs truncated")
        ax.grid(True, alpha=0.3)
    for ax in axes.ravel()[len(subsets) :]:
        ax.set_visible(False)
    shared_legend(fig, handles)
    return save_figure(fig, path)
