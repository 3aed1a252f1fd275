"""(c) t-SNE (paper 7.3, Figs. 8–9): ``tsne_inputs`` (per-event input representations of Keyword, Latent Feature
and Relative Representation, coloured by modality) and ``tsne_outputs`` (the GRU's final state per test PE,
coloured by PE type): ``tsne/tsne_inputs.{png,pdf,svg}``, ``tsne/tsne_outputs.{png,pdf,svg}`` and the coordinates
as CSV."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.data.tensors import EVENT_CONVERSATION, EVENT_PAD, EVENT_SESSION, SUBSET_NAMES, PreparedData
from mmrec_ray.errors import MmrecError
from mmrec_ray.evaluation.analyses.common import (
    JOINT_MODELS,
    _say,
    _subset_names,
    _write_csv,
    analyses_dir,
    available_models,
    checkpoint_seeds,
    load_fitted,
)
from mmrec_ray.evaluation.tables import SUBSET_DISPLAY, display_name
from mmrec_ray.models.base import Recommender
from mmrec_ray.models.layers import MaskedGRU


def _sample_events(data: PreparedData, max_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``max_points`` distinct events (kind, row) drawn uniformly (seeded) from the events of every PE."""
    kind = np.asarray(data.event_kind).ravel()
    row = np.asarray(data.event_row).ravel()
    real = kind != EVENT_PAD
    pairs = np.unique(np.stack([kind[real], row[real]], axis=1), axis=0)
    rng = np.random.default_rng(seed)
    if len(pairs) > max_points:
        pairs = pairs[np.sort(rng.choice(len(pairs), max_points, replace=False))]
    return pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)


@torch.no_grad()
def input_representation(
    name: str, recommender: Recommender | None, store: FeatureStore, kinds: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """The per-event input of the model's GRU (paper Fig. 8), (R, F) float32:

    - keyword: [is_conversation, multi-hot keywords (conversation) or tags (session)];
    - latent_feature: the fitted model's eq. (4) latent features (``LatentFeatureNetwork.latent``);
    - relative_representation: cosine similarities to the anchors of the event's modality (eqs. 11–12).
    """
    is_conversation = kinds == EVENT_CONVERSATION
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    conv_t = torch.as_tensor(is_conversation)
    if name == "keyword":
        # Keyword's own vocabulary columns and session vectors (the pooled filter may differ from the tag one).
        conversations, sessions = store.keyword_tables
        keywords = conversations[torch.where(conv_t, rows_t, -1)]
        tags = sessions[torch.where(conv_t, -1, rows_t)]
        features = torch.where(conv_t[:, None], keywords, tags)
        return torch.cat([conv_t[:, None].float(), features], dim=1).numpy()
    if recommender is None:
        raise MmrecError(f"{name}: the input representation needs the fitted model")
    if name == "latent_feature":
        conversation = store.conversation_table[torch.where(conv_t, rows_t, -1)]  # zero rows at sessions
        session = store.session_table[torch.where(conv_t, -1, rows_t)]
        return recommender.network.latent(conv_t.float(), conversation, session).numpy()
    if name == "relative_representation":
        conversation_table, session_table = recommender.relative_tables(store)
        conversation = conversation_table[torch.where(conv_t, rows_t, -1)]
        session = session_table[torch.where(conv_t, -1, rows_t)]
        return torch.where(conv_t[:, None], conversation, session).numpy()
    raise MmrecError(f"no input representation for {name!r}; t-SNE inputs cover {list(JOINT_MODELS)}")


@torch.no_grad()
def output_representation(
    recommender: Recommender, store: FeatureStore, indices: np.ndarray
) -> tuple[np.ndarray, str]:
    """Per PE the final hidden state of the model's (first) masked GRU, (n, H), captured with a forward hook
    while the model predicts — or, for a model without a GRU, its predicted scores (n, J). Returns
    (representation, what it is)."""
    network = getattr(recommender, "network", None)
    gru = (
        next((m for m in network.modules() if isinstance(m, MaskedGRU)), None)
        if network is not None
        else None
    )
    if gru is None:
        return np.nan_to_num(recommender.predict(store, indices)), "predicted scores"
    captured: list[torch.Tensor] = []
    handle = gru.register_forward_hook(lambda _m, _i, output: captured.append(output.detach().cpu()))
    try:
        recommender.predict(store, indices)
    finally:
        handle.remove()
    return torch.cat(captured).numpy(), "final GRU state"


def _tsne(features: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = len(features)
    if n < 3:
        return np.zeros((n, 2))
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
    return TSNE(
        n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", random_state=seed
    ).fit_transform(np.asarray(features, dtype=np.float32))


def tsne_inputs(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    max_points: int = 2000,
    seed: int = 0,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Fig. 8: t-SNE of the per-event input representations, coloured by modality. Writes
    ``analyses/tsne/tsne_inputs.{csv,png}`` (model, kind, row, x, y)."""
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    store = FeatureStore(data, device="cpu")
    kinds, rows = _sample_events(data, max_points, seed)
    frames = []
    for name in models:
        if name not in JOINT_MODELS:
            continue
        seeds = checkpoint_seeds(run_dir, name)
        if name != "keyword" and not seeds:
            say(f"analyses: t-SNE inputs: no checkpoint of {name}; skipped")
            continue
        recommender = load_fitted(run_dir, name, seeds[0], store, training) if seeds else None
        features = input_representation(name, recommender, store, kinds, rows)
        xy = _tsne(features, seed)
        frames.append(pd.DataFrame({"model": name, "kind": kinds, "row": rows, "x": xy[:, 0], "y": xy[:, 1]}))
    frame = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "kind", "row", "x", "y"])
    )
    out_dir = analyses_dir(run_dir) / "tsne"
    _write_csv(out_dir / "tsne_inputs.csv", frame)
    _plot_tsne(
        frame,
        out_dir / "tsne_inputs.png",
        colour_by="kind",
        labels={EVENT_CONVERSATION: "conversation", EVENT_SESSION: "web session"},
    )
    say(f"analyses: t-SNE of input representations written to {out_dir}")
    return frame


def tsne_outputs(
    run_dir: str | Path,
    models: Sequence[str] = JOINT_MODELS,
    max_points: int = 2000,
    seed: int = 0,
    data: PreparedData | None = None,
    training: TrainingConfig | None = None,
    echo: Callable[[str], None] | None = print,
) -> pd.DataFrame:
    """Fig. 9: t-SNE of each test PE's model output (final GRU state), coloured by PE type. Writes
    ``analyses/tsne/tsne_outputs.{csv,png}`` (model, purchase_event_id, subset, representation, x, y)."""
    say = _say(echo)
    run_dir = Path(run_dir)
    from mmrec_ray.evaluation.evaluate import load_prepared

    data = data if data is not None else load_prepared(run_dir)
    store = FeatureStore(data, device="cpu")
    test = data.test_indices()
    rng = np.random.default_rng(seed)
    if len(test) > max_points:
        test = np.sort(rng.choice(test, max_points, replace=False))
    frames = []
    for name in available_models(run_dir, models):
        recommender = load_fitted(run_dir, name, checkpoint_seeds(run_dir, name)[0], store, training)
        features, what = output_representation(recommender, store, test)
        xy = _tsne(features, seed)
        frames.append(
            pd.DataFrame(
                {
                    "model": name,
                    "purchase_event_id": np.asarray(data.purchase_event_id)[test],
                    "subset": _subset_names(data, test),
                    "representation": what,
                    "x": xy[:, 0],
                    "y": xy[:, 1],
                }
            )
        )
    columns = ["model", "purchase_event_id", "subset", "representation", "x", "y"]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    out_dir = analyses_dir(run_dir) / "tsne"
    _write_csv(out_dir / "tsne_outputs.csv", frame)
    _plot_tsne(
        frame,
        out_dir / "tsne_outputs.png",
        colour_by="subset",
        labels={s: SUBSET_DISPLAY[s] for s in SUBSET_NAMES.values()},
    )
    say(f"analyses: t-SNE of model outputs written to {out_dir}")
    return frame


def _plot_tsne(frame: pd.DataFrame, path: Path, colour_by: str, labels: dict) -> Path:
    """One panel per model, points coloured by ``colour_by``; one legend below the panels (every panel shows
    the same points, so the counts hold for each). No title: the report's caption says what is shown."""
    import matplotlib.pyplot as plt

    from mmrec_ray.evaluation.figures import panel_label, save_figure, shared_legend

    models = [m for m in JOINT_MODELS if (frame["model"] == m).any()] + sorted(
        set(frame["model"]) - set(JOINT_MODELS)
    )
    n_panels = max(len(models), 1)
    fig, axes = plt.subplots(1, n_panels, figsize=(4.4 * n_panels, 4.9), squeeze=False, layout="constrained")
    colours = dict(zip(labels, ["tab:orange", "tab:blue", "tab:green", "tab:red"]))
    handles: dict[str, object] = {}
    for ax, (letter, model) in zip(axes[0], zip("abcdefgh", models)):
        part = frame[frame["model"] == model]
        for value, label in labels.items():
            points = part[part[colour_by] == value]
            if points.empty:
                continue
            handle = ax.scatter(points["x"], points["y"], s=6, alpha=0.6, color=colours[value])
            handles.setdefault(f"{label} ({len(points)})", handle)
        panel_label(ax, letter, display_name(model))
        ax.set_xlabel("t-SNE dimension 1")
        ax.set_ylabel("t-SNE dimension 2")
    if not models:
        axes[0, 0].text(0.5, 0.5, "no fitted model to visualise", ha="center", va="center")
        axes[0, 0].set_axis_off()
    shared_legend(fig, handles)
    for legend in fig.legends:
        for handle in legend.legend_handles:
            handle.set_sizes([30])
    return save_figure(fig, path)
