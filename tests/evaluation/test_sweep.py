"""The sweep report (``mmrec_ray.evaluation.sweep``) on hand-made trials tables: best configurations, the spread
of validation loss, hyperparameter importance (a parameter that drives the loss ranks above a noise parameter,
with Optuna's fANOVA and with the fallback estimate), degenerate sweeps, the files it writes, the report section
and the pipeline's hook."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.evaluation import sweep
from mmrec_ray.models import space

SPACE = {"learning_rate": space.loguniform(1e-4, 1e-1), "dropout": space.uniform(0.1, 0.5)}


def _trials(n: int = 40, seed: int = 0, model: str = "keyword") -> pd.DataFrame:
    """``n`` trials whose loss is a parabola in log10(learning_rate) (minimum at 1e-3) plus a little noise;
    dropout is drawn independently and does not enter the loss. Columns as trials.csv writes them."""
    rng = np.random.default_rng(seed)
    lr = 10 ** rng.uniform(-4, -1, n)
    dropout = rng.uniform(0.1, 0.5, n)
    loss = 0.3 + 0.05 * (np.log10(lr) + 3) ** 2 + rng.normal(0, 0.002, n)
    return pd.DataFrame(
        {
            "model": model,
            "trial": [f"{model}_{i:03d}" for i in range(n)],
            "batch_size": 64,
            "units": 128,
            "dropout": dropout,
            "num_anchors": 50,
            "learning_rate": lr,
            "best_val_loss": loss,
            "epochs": 3,
            "status": "COMPLETED",
        }
    )


def test_best_configs_are_the_lowest_losses_in_order():
    trials = _trials()
    part = sweep.summarize_model(trials, SPACE, top_k=3)
    expected = trials.sort_values("best_val_loss").head(3)
    assert [b["trial"] for b in part["best"]] == list(expected["trial"])
    assert [b["val_loss"] for b in part["best"]] == pytest.approx(list(expected["best_val_loss"]))
    assert part["best"][0]["params"] == pytest.approx(
        {"learning_rate": expected["learning_rate"].iloc[0], "dropout": expected["dropout"].iloc[0]}
    )
    assert part["n_trials"] == part["n_with_loss"] == 40


def test_spread_is_min_quartiles_max_and_iqr_of_the_losses_with_one():
    trials = _trials(n=9)
    trials.loc[0, "best_val_loss"] = np.nan  # stopped before its final stage: no loss
    trials["best_val_loss"] = trials["best_val_loss"].astype(float)
    losses = trials["best_val_loss"].dropna().to_numpy()
    part = sweep.summarize_model(trials, SPACE)
    s = part["spread"]
    q1, median, q3 = np.percentile(losses, [25, 50, 75])
    assert (s["min"], s["max"]) == pytest.approx((losses.min(), losses.max()))
    assert (s["q1"], s["median"], s["q3"], s["iqr"]) == pytest.approx((q1, median, q3, q3 - q1))
    assert part["n_trials"] == 9 and part["n_with_loss"] == 8


@pytest.mark.parametrize("method", ["fanova", "variance"])
def test_importance_ranks_the_parameter_that_drives_the_loss_above_noise(method):
    trials = _trials(n=60)
    imp = sweep.importance(trials, ["learning_rate", "dropout"], SPACE, method=method)
    assert imp["method"] == method
    assert imp["values"]["learning_rate"] > imp["values"]["dropout"]
    assert imp["values"]["learning_rate"] > 0.7
    assert sum(imp["values"].values()) == pytest.approx(1.0, abs=1e-6)
    assert list(imp["values"])[0] == "learning_rate"  # ranked


def test_importance_is_fanova_when_optuna_imports_and_the_estimate_without(monkeypatch):
    trials = _trials(n=30)
    assert sweep.importance(trials, ["learning_rate", "dropout"], SPACE)["method"] == "fanova"
    import builtins

    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna" or name.startswith("optuna."):
            raise ImportError("no optuna here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    imp = sweep.importance(trials, ["learning_rate", "dropout"], SPACE)
    assert imp["method"] == "variance"
    assert imp["values"]["learning_rate"] > imp["values"]["dropout"]


def test_grid_values_read_back_from_csv_fit_the_declared_choices():
    """A grid of ints comes back from trials.csv as floats (64.0): fANOVA still takes the declared choices."""
    rng = np.random.default_rng(1)
    units = rng.choice([64, 128, 256], 30).astype(float)
    dropout = rng.choice([0.2, 0.4], 30)
    trials = _trials(n=30).assign(units=units, dropout=dropout, best_val_loss=0.5 - units / 1000)
    grid = {"units": space.grid([64, 128, 256]), "dropout": space.grid([0.2, 0.4])}
    imp = sweep.importance(trials, ["units", "dropout"], grid)
    assert imp["method"] == "fanova" and imp["note"] == ""
    assert imp["values"]["units"] > imp["values"]["dropout"]
    assert sweep.summarize_model(trials, grid)["best"][0]["params"]["units"] == 256
    assert isinstance(sweep.summarize_model(trials, grid)["best"][0]["params"]["units"], int)


def test_one_trial_and_constant_parameters_give_no_importance_and_no_error():
    one = sweep.summarize_model(_trials(n=1), SPACE)
    assert one["importance"]["method"] is None and "1 trial" in one["importance"]["note"]
    assert one["spread"]["iqr"] == 0.0 and len(one["best"]) == 1

    constant = _trials(n=10).assign(dropout=0.3)
    part = sweep.summarize_model(constant, SPACE)
    assert part["importance"]["constant"] == ["dropout"]
    assert part["importance"]["values"]["dropout"] == 0.0
    assert part["importance"]["values"]["learning_rate"] == pytest.approx(1.0)

    flat = _trials(n=10).assign(learning_rate=1e-3, dropout=0.3)
    assert "one value" in sweep.summarize_model(flat, SPACE)["importance"]["note"]

    nothing = _trials(n=4).assign(best_val_loss=np.nan)
    part = sweep.summarize_model(nothing, SPACE)
    assert part["best"] == [] and part["spread"]["min"] is None and part["importance"]["method"] is None


def test_without_a_declared_space_the_searched_fields_are_those_that_vary():
    trials = _trials(n=10)
    assert sweep.searched_params(trials, None) == ["dropout", "learning_rate"]
    assert sweep.searched_params(trials, SPACE) == ["learning_rate", "dropout"]


def _tune_outputs(run_dir, trials: pd.DataFrame) -> None:
    (run_dir / "tune").mkdir(parents=True)
    trials.to_csv(run_dir / "tune" / "trials.csv", index=False)


def test_write_sweep_writes_json_markdown_and_a_figure_per_model(tmp_path):
    trials = pd.concat([_trials(n=20), _trials(n=5, seed=3, model="session"), _trials(n=1, model="uim")])
    _tune_outputs(tmp_path, trials)
    summary = sweep.write_sweep(tmp_path)
    assert list(summary["models"]) == ["keyword", "session", "uim"]
    on_disk = json.loads((tmp_path / "tune" / "sweep.json").read_text())
    assert on_disk["n_trials"] == 26
    assert list(on_disk["models"]) == ["keyword", "session", "uim"]  # tuning order, not alphabetical
    # what the report reads back: the most important parameter is the largest share, not the first name
    overview = sweep.overview_frame(sweep.read_sweep(tmp_path)).set_index("model")
    assert overview.loc["keyword", "most important"].startswith("learning_rate (")
    assert (
        on_disk["models"]["keyword"]["best"][0]["trial"] == summary["models"]["keyword"]["best"][0]["trial"]
    )
    text = (tmp_path / "tune" / "sweep.md").read_text()
    assert "# Hyperparameter sweep: 26 trials" in text and "| keyword | 20 |" in text
    for name in ("keyword", "session"):
        figure = on_disk["models"][name]["figure"]
        assert figure == f"tune/sweep/{name}.png" and (tmp_path / figure).stat().st_size > 1000
    # one trial and no config.yaml to name its space: nothing varies, nothing to plot, no error
    assert on_disk["models"]["uim"]["figure"] is None and on_disk["models"]["uim"]["searched"] == {}
    assert sweep.is_current(tmp_path)


def test_write_sweep_without_tuning_writes_nothing(tmp_path):
    assert sweep.write_sweep(tmp_path) is None
    assert sweep.is_current(tmp_path)  # nothing to do
    assert not (tmp_path / "tune").exists()


def test_report_has_a_sweep_section_when_the_tune_stage_ran(tmp_path):
    from mmrec_ray.evaluation.report import build_report, to_html, to_markdown

    _tune_outputs(tmp_path, _trials(n=20))
    before = build_report(tmp_path)  # trials but no summary yet: a stated gap
    assert "tune/sweep.json" in before.missing
    sweep.write_sweep(tmp_path)
    report = build_report(tmp_path)
    (section,) = [s for s in report.sections if s.anchor == "sweep"]
    assert "sweep" in report.tables and "tune/sweep/keyword.png" in report.figures
    assert "tune/sweep.json" not in report.missing
    markdown = to_markdown(report)
    assert "Hyperparameter sweep" in markdown and "learning_rate" in markdown
    html = to_html(report)
    assert 'id="sweep"' in html and "data:image/png;base64" in html


def test_report_without_tuning_says_so_and_misses_nothing(tmp_path):
    from mmrec_ray.evaluation.report import build_report

    report = build_report(tmp_path)
    (section,) = [s for s in report.sections if s.anchor == "sweep"]
    assert section.blocks[0][0] == "p" and "did not run" in section.blocks[0][1]
    assert not any("sweep" in m for m in report.missing)


def test_the_pipelines_aggregate_hook_writes_the_sweep_once_and_skips_without_tuning(tmp_path):
    from mmrec_ray.config import ExperimentConfig
    from mmrec_ray.pipeline.runner import Pipeline

    lines = []
    pipeline = Pipeline(ExperimentConfig(run_dir=str(tmp_path)), log=lines.append)
    pipeline.sweep_summary()  # no tune stage: nothing, no error
    assert not (tmp_path / "tune" / "sweep.json").exists() and lines == []
    _tune_outputs(tmp_path, _trials(n=12))
    pipeline.sweep_summary()
    assert (tmp_path / "tune" / "sweep.json").exists() and "12 trials" in lines[-1]
    pipeline.sweep_summary()  # current: not rewritten
    assert len(lines) == 1
