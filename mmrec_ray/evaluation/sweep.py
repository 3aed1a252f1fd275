"""The sweep report: what a hyperparameter search found, per model, from the tune stage's ``trials.csv``.

Per model: the best ``top_k`` configurations with their validation losses; the spread of validation loss across
the space (min / quartiles / max, IQR: how much tuning matters for that model); hyperparameter importance; and
one scatter panel per searched hyperparameter (validation loss against its value).

Importance is Optuna's fANOVA (``optuna.importance.FanovaImportanceEvaluator``: a random forest fitted to
(params -> loss), the share of its variance each parameter explains) over an in-memory study built from the
trials, with distributions from the space the model declared (as the config changed it). Without Optuna it is a
main-effect variance estimate (eta squared: the share of the loss variance explained by grouping trials by the
parameter's value, continuous values in quartile bins), normalised the same way. A parameter that took one
value only in a model's trials is reported as constant (importance 0); a model with fewer than two trials with a
loss has no importance.

Plain Python (pandas, matplotlib, optional optuna); no Ray. Outputs: ``RUN_DIR/tune/sweep.json``,
``RUN_DIR/tune/sweep.md`` and ``RUN_DIR/tune/sweep/{model}.png`` (+ PDF, SVG). ``write_sweep`` is called by the
pipeline's aggregate stage when ``trials.csv`` is newer than ``sweep.json``; ``python -m
mmrec_ray.evaluation.sweep RUN_DIR`` writes them by hand.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmrec_ray.io import atomic_write_text

SWEEP_JSON = "sweep.json"
SWEEP_MD = "sweep.md"
FIGURE_DIR = "sweep"
TOP_K = 5
FEW_TRIALS = 10  # below this many trials with a loss, importance comes with a caution
# trials.csv columns that are not hyperparameters
_NOT_PARAMS = {"model", "trial", "params", "best_val_loss", "epochs", "status", "checkpoint"}


# --------------------------------------------------------------------------------------------------- inputs
def tune_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "tune"


def read_trials(run_dir: str | Path) -> pd.DataFrame | None:
    """``RUN_DIR/tune/trials.csv``, or None when the tune stage has not run (or tuned nothing)."""
    from mmrec_ray.evaluation.report.document import read_csv

    return read_csv(tune_dir(run_dir) / "trials.csv")


def declared_spaces(cfg, models) -> dict[str, dict[str, Any]]:
    """model -> {field: Space} as the tune stage searched it (the model's declaration, the config's changes)."""
    from mmrec_ray.models import space

    out = {}
    for name in models:
        try:
            out[name] = space.resolve(cfg.tune, name)
        except Exception:  # a model this version no longer knows: infer from its trials
            continue
    return out


def _config_of(run_dir: Path):
    path = run_dir / "config.yaml"
    if not path.exists():
        return None
    try:
        from mmrec_ray.config import load_config

        return load_config(path)
    except Exception:
        return None


# --------------------------------------------------------------------------------------------------- summary
def searched_params(rows: pd.DataFrame, space: dict[str, Any] | None) -> list[str]:
    """The hyperparameters searched for one model: its space's fields (those with a column), else every
    hyperparameter column that varies across its trials."""
    if space:
        return [f for f in space if f in rows.columns]
    columns = [c for c in rows.columns if c not in _NOT_PARAMS]
    return [c for c in columns if rows[c].notna().any() and rows[c].nunique(dropna=True) > 1]


def _plain(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _value(value: Any) -> Any:
    """A parameter value as JSON: integral floats read back from CSV become ints (64.0 -> 64)."""
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def spread(losses: pd.Series) -> dict[str, float | None]:
    finite = losses[np.isfinite(losses.to_numpy(dtype=float))].astype(float)
    if finite.empty:
        return {k: None for k in ("min", "q1", "median", "q3", "max", "iqr")}
    q1, median, q3 = np.percentile(finite, [25, 50, 75])
    return {
        "min": float(finite.min()),
        "q1": float(q1),
        "median": float(median),
        "q3": float(q3),
        "max": float(finite.max()),
        "iqr": float(q3 - q1),
    }


def _finite(rows: pd.DataFrame) -> pd.DataFrame:
    losses = pd.to_numeric(rows["best_val_loss"], errors="coerce")
    return rows.assign(best_val_loss=losses)[np.isfinite(losses.to_numpy(dtype=float))]


def summarize_model(
    rows: pd.DataFrame, space: dict[str, Any] | None = None, top_k: int = TOP_K, seed: int = 0
) -> dict[str, Any]:
    """One model's part of ``sweep.json`` (``rows``: its trials.csv rows)."""
    params = searched_params(rows, space)
    scored = _finite(rows).sort_values(["best_val_loss", "trial"], kind="stable")
    best = [
        {
            "trial": str(row["trial"]),
            "val_loss": float(row["best_val_loss"]),
            "epochs": _value(row.get("epochs")),
            "status": row.get("status"),
            "params": {p: _value(row[p]) for p in params},
        }
        for _, row in scored.head(top_k).iterrows()
    ]
    status = rows["status"].value_counts().to_dict() if "status" in rows else {}
    return {
        "n_trials": int(len(rows)),
        "n_with_loss": int(len(scored)),
        "status": {str(k): int(v) for k, v in status.items()},
        "searched": {p: repr(space[p]) if space and p in space else "observed" for p in params},
        "best": best,
        "spread": spread(scored["best_val_loss"]) if len(scored) else spread(pd.Series([], dtype=float)),
        "importance": importance(scored, params, space, seed=seed),
    }


# --------------------------------------------------------------------------------------------------- importance
def importance(
    rows: pd.DataFrame,
    params: list[str],
    space: dict[str, Any] | None = None,
    seed: int = 0,
    method: str = "auto",
) -> dict[str, Any]:
    """``{"method", "values": {param: share}, "constant": [...], "note"}`` for one model's scored trials.

    ``method``: ``fanova`` (Optuna), ``variance`` (eta squared), or ``auto`` (fANOVA when Optuna imports)."""
    constant = [p for p in params if rows[p].nunique(dropna=False) <= 1] if len(rows) else list(params)
    varying = [p for p in params if p not in constant]
    out: dict[str, Any] = {
        "method": None,
        "values": {p: 0.0 for p in params},
        "constant": constant,
        "note": "",
    }
    if len(rows) < 2:
        out["note"] = f"{len(rows)} trial(s) with a validation loss: no importance"
        return out
    if not varying:
        out["note"] = "every searched hyperparameter took one value: no importance"
        return out
    if float(rows["best_val_loss"].std(ddof=0)) == 0.0:
        out["note"] = "every trial has the same validation loss: no importance"
        return out
    if method in ("auto", "fanova"):
        try:
            values = _fanova(rows, varying, space or {}, seed)
            out["method"] = "fanova"
        except ImportError:
            if method == "fanova":
                raise
            values = None
        except Exception as error:  # a study Optuna refuses (odd values): the estimate below instead
            values = None
            out["note"] = f"fANOVA failed ({type(error).__name__}: {error}); main-effect variance instead"
        if values is None:
            values, out["method"] = _variance(rows, varying), "variance"
    else:
        values, out["method"] = _variance(rows, varying), "variance"
    out["values"].update({p: float(v) for p, v in values.items()})
    if len(rows) < FEW_TRIALS and not out["note"]:
        out["note"] = f"only {len(rows)} trials with a loss: importance is indicative at best"
    out["values"] = dict(sorted(out["values"].items(), key=lambda kv: -kv[1]))
    return out


def distribution(dimension: Any, observed: pd.Series):
    """The Optuna distribution of one searched field: from its declared Space where the observed values fit
    it, else from the observed values (categorical for few distinct values, a float range otherwise)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    values = [_value(v) for v in observed.dropna().unique()]
    kind = getattr(dimension, "kind", None)
    if kind in ("grid", "choice"):
        choices = list(dimension.args)
        if all(v in choices for v in values):
            return CategoricalDistribution(choices)
    elif kind in ("uniform", "loguniform", "randint"):
        low, high = dimension.args
        numbers = [float(v) for v in values]
        if kind == "randint" and all(low <= v <= high - 1 for v in numbers):
            return IntDistribution(int(low), int(high) - 1)
        if kind != "randint" and all(low <= v <= high for v in numbers):
            return FloatDistribution(float(low), float(high), log=kind == "loguniform")
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and len(values) > 10:
        return FloatDistribution(float(min(values)), float(max(values)))
    return CategoricalDistribution(sorted(values, key=str))


def _fanova(rows: pd.DataFrame, params: list[str], space: dict[str, Any], seed: int) -> dict[str, float]:
    import optuna
    from optuna.distributions import CategoricalDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {p: distribution(space.get(p), rows[p]) for p in params}
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=seed))
    for _, row in rows.iterrows():
        values = {}
        for p in params:
            value, dist = _value(row[p]), distributions[p]
            if value is None:
                break
            if isinstance(dist, CategoricalDistribution):
                value = next(c for c in dist.choices if c == value)
            elif isinstance(dist, IntDistribution):
                value = int(value)
            else:
                value = float(value)
            values[p] = value
        if len(values) != len(params):
            continue  # a trial without a value for some field (an older table): not comparable
        study.add_trial(
            optuna.trial.create_trial(
                params=values, distributions=distributions, value=float(row["best_val_loss"])
            )
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator, params=params))


def _variance(rows: pd.DataFrame, params: list[str]) -> dict[str, float]:
    """Main-effect share of variance (eta squared) per parameter, normalised to sum to 1."""
    loss = rows["best_val_loss"].astype(float).to_numpy()
    total = float(((loss - loss.mean()) ** 2).sum())
    shares = {}
    for p in params:
        column = rows[p]
        groups = column.astype(str)
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().all() and numeric.nunique() > 4:
            groups = pd.qcut(numeric.rank(method="first"), 4, labels=False).astype(str)
        between = 0.0
        for _, index in pd.Series(range(len(loss))).groupby(groups.to_numpy()).groups.items():
            part = loss[np.asarray(index)]
            between += len(part) * (part.mean() - loss.mean()) ** 2
        shares[p] = between / total if total > 0 else 0.0
    norm = sum(shares.values())
    return {p: (v / norm if norm > 0 else 0.0) for p, v in shares.items()}


# --------------------------------------------------------------------------------------------------- outputs
def summarize(
    trials: pd.DataFrame,
    spaces: dict[str, dict[str, Any]] | None = None,
    top_k: int = TOP_K,
    seed: int = 0,
    search: str | None = None,
) -> dict[str, Any]:
    """``sweep.json``'s content for a trials table (trials.csv's columns)."""
    spaces = spaces or {}
    models = list(dict.fromkeys(trials["model"]))
    return {
        "search": search,
        "n_trials": int(len(trials)),
        "top_k": top_k,
        "models": {
            name: summarize_model(trials[trials["model"] == name], spaces.get(name), top_k, seed)
            for name in models
        },
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def overview_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per model: trials, best / median / max validation loss, IQR, the most important parameter."""
    records = []
    for name, part in summary["models"].items():
        s, imp = part["spread"], part["importance"]
        ranked = sorted(
            ((p, v) for p, v in imp["values"].items() if p not in imp["constant"]), key=lambda pv: -pv[1]
        )
        top = f"{ranked[0][0]} ({ranked[0][1]:.2f})" if ranked and imp["method"] else "-"
        records.append(
            {
                "model": name,
                "trials": part["n_trials"],
                "with loss": part["n_with_loss"],
                "best": _fmt(s["min"]),
                "median": _fmt(s["median"]),
                "max": _fmt(s["max"]),
                "IQR": _fmt(s["iqr"]),
                "most important": top,
                "importance": imp["method"] or "-",
            }
        )
    return pd.DataFrame(records)


def best_frame(summary: dict[str, Any], per_model: int | None = None) -> pd.DataFrame:
    """The best configurations of every model (``per_model`` each, default all kept), one row per trial."""
    records = []
    for name, part in summary["models"].items():
        for rank, entry in enumerate(part["best"][:per_model], start=1):
            records.append(
                {
                    "model": name,
                    "rank": rank,
                    "trial": entry["trial"],
                    "val_loss": f"{entry['val_loss']:.4f}",
                    "params": ", ".join(f"{k}={_fmt(v)}" for k, v in entry["params"].items()) or "-",
                }
            )
    return pd.DataFrame(records, columns=["model", "rank", "trial", "val_loss", "params"])


def importance_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """model x hyperparameter importance shares ('const' for a parameter that took one value)."""
    params = list(
        dict.fromkeys(p for part in summary["models"].values() for p in part["importance"]["values"])
    )
    records = []
    for name, part in summary["models"].items():
        imp = part["importance"]
        if not imp["values"]:
            continue
        record = {"model": name, "method": imp["method"] or "-"}
        for p in params:
            if p not in imp["values"]:
                record[p] = ""
            elif p in imp["constant"]:
                record[p] = "const"
            else:
                record[p] = f"{imp['values'][p]:.2f}" if imp["method"] else "-"
        records.append(record)
    return pd.DataFrame(records)


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "(none)"
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def sweep_markdown(summary: dict[str, Any]) -> str:
    search = f" ({summary['search']} search)" if summary.get("search") else ""
    lines = [
        f"# Hyperparameter sweep{search}: {summary['n_trials']} trials",
        "",
        "Validation loss (best final-stage epoch of each trial; lower is better). Spread over the trials that "
        "reached a loss; importance: share of the loss variance each searched hyperparameter explains "
        "(fANOVA, or main-effect variance without Optuna).",
        "",
        _table(overview_frame(summary)),
        "",
        "## Hyperparameter importance",
        "",
        _table(importance_frame(summary)),
        "",
        f"## Best configurations (top {summary['top_k']} per model)",
        "",
        _table(best_frame(summary)),
        "",
    ]
    notes = [
        f"- {name}: {part['importance']['note']}"
        for name, part in summary["models"].items()
        if part["importance"]["note"]
    ]
    if notes:
        lines += ["Notes:", "", *notes, ""]
    return "\n".join(lines)


def plot_model(
    rows: pd.DataFrame, params: list[str], path: Path, space: dict[str, Any] | None = None
) -> Path | None:
    """Validation loss against each searched hyperparameter, one panel each. A list dimension (grid, choice;
    without a declared space: six values or fewer) is drawn at evenly spaced positions, jittered so that
    points do not stack; a range on its own axis, logarithmic for loguniform. The star is the best trial."""
    from matplotlib.ticker import NullFormatter

    from mmrec_ray.evaluation.figures import panel_label, plt, save_figure

    scored = _finite(rows).reset_index(drop=True)
    if scored.empty or not params:
        return None
    space = space or {}
    cols = min(len(params), 4)
    nrows = math.ceil(len(params) / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(3.2 * cols, 2.8 * nrows), squeeze=False, layout="constrained"
    )
    rng = np.random.default_rng(0)
    loss = scored["best_val_loss"].to_numpy(dtype=float)
    best = int(loss.argmin())
    for i, (ax, p) in enumerate(zip(axes.flat, params)):
        column = scored[p]
        numeric = pd.to_numeric(column, errors="coerce")
        dimension = space.get(p)
        listed = getattr(dimension, "is_list", None)
        if listed is None:
            listed = not numeric.notna().all() or numeric.nunique() <= 6
        if listed:
            labels = sorted({_value(v) for v in column.dropna()}, key=lambda v: (isinstance(v, str), v))
            if getattr(dimension, "is_list", False):  # the declared order, values never tried left out
                labels = [v for v in dimension.values if v in labels] + [
                    v for v in labels if v not in dimension.values
                ]
            position = {str(v): j for j, v in enumerate(labels)}
            x = np.array([position.get(str(_value(v)), np.nan) for v in column], dtype=float)
            x = x + rng.uniform(-0.12, 0.12, len(x))
            ax.set_xticks(range(len(labels)), [_fmt(v) for v in labels])
            ax.set_xlim(-0.5, len(labels) - 0.5)
        else:
            x = numeric.to_numpy(dtype=float)
            spans_decades = np.nanmin(x) > 0 and np.nanmax(x) / np.nanmin(x) > 10
            if getattr(dimension, "kind", None) == "loguniform" or spans_decades:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # crowded labels over less than a decade
        ax.scatter(x, loss, s=14, alpha=0.7)
        ax.scatter([x[best]], [loss[best]], s=60, marker="*", color="red", zorder=3)
        ax.set_xlabel(p)
        if i % cols == 0:
            ax.set_ylabel("validation loss")
        panel_label(ax, "abcdefghijklmnopqrstuvwxyz"[i % 26], p)
    for ax in list(axes.flat)[len(params) :]:
        ax.set_visible(False)
    return save_figure(fig, path)


def write_sweep(
    run_dir: str | Path, cfg=None, top_k: int = TOP_K, figures: bool = True
) -> dict[str, Any] | None:
    """Write ``tune/sweep.json``, ``tune/sweep.md`` and the per-model figures from ``tune/trials.csv``;
    None (nothing written) when the tune stage did not run. ``cfg`` (default: RUN_DIR/config.yaml) gives each
    model's declared space; without it the searched fields are those that vary."""
    run_dir = Path(run_dir)
    trials = read_trials(run_dir)
    if trials is None or "model" not in trials or "best_val_loss" not in trials:
        return None
    cfg = cfg if cfg is not None else _config_of(run_dir)
    models = list(dict.fromkeys(trials["model"]))
    spaces = declared_spaces(cfg, models) if cfg is not None else {}
    summary = summarize(
        trials,
        spaces,
        top_k,
        seed=int(getattr(cfg, "seed", 0) or 0),
        search=getattr(getattr(cfg, "tune", None), "search", None),
    )
    out = tune_dir(run_dir)
    if figures:
        for name, part in summary["models"].items():
            params = list(part["searched"])
            path = plot_model(
                trials[trials["model"] == name],
                params,
                out / FIGURE_DIR / f"{_safe(name)}.png",
                spaces.get(name),
            )
            part["figure"] = str(path.relative_to(run_dir)) if path is not None else None
    atomic_write_text(out / SWEEP_MD, sweep_markdown(summary))
    # Not sorted: models in tuning order, importances from the largest (what the report shows, in that order).
    atomic_write_text(out / SWEEP_JSON, json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def is_current(run_dir: str | Path) -> bool:
    """``sweep.json`` exists and is newer than ``trials.csv`` (or there is no trials.csv: nothing to do)."""
    trials = tune_dir(run_dir) / "trials.csv"
    done = tune_dir(run_dir) / SWEEP_JSON
    if not trials.exists():
        return True
    return done.exists() and done.stat().st_mtime >= trials.stat().st_mtime


def read_sweep(run_dir: str | Path) -> dict[str, Any] | None:
    path = tune_dir(run_dir) / SWEEP_JSON
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write RUN_DIR/tune/sweep.{json,md} from tune/trials.csv")
    parser.add_argument("run_dir")
    parser.add_argument("--top-k", type=int, default=TOP_K)
    args = parser.parse_args(argv)
    summary = write_sweep(args.run_dir, top_k=args.top_k)
    if summary is None:
        print(f"{args.run_dir}: no tune/trials.csv (the tune stage did not run)")
        return 1
    print((tune_dir(args.run_dir) / SWEEP_MD).read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
