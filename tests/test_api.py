"""The Python API (README, "Python API"): ``import mmrec_ray`` stays light, ``Experiment`` loads configs as the
CLI does and reads a run's results into one tidy frame, ``evaluate`` scores predictions in memory exactly as
`mmrec evaluate` does, and the README's example runs verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.errors import ConfigError, MmrecError
from tests.data.conftest import write_tiny_dataset
from tests.evaluation.helpers import tiny_prepared, write_model_predictions

REPO = Path(__file__).resolve().parents[1]


def test_import_stays_light_and_the_api_is_exported():
    code = (
        "import sys, mmrec_ray\n"
        "heavy = ('torch', 'ray', 'pandas')\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "mmrec_ray.Experiment, mmrec_ray.evaluate, mmrec_ray.load_config\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "from mmrec_ray import Experiment, evaluate\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_from_yaml_takes_packaged_names_keyword_overrides_and_set_strings(tmp_path, monkeypatch):
    from mmrec_ray import Experiment

    monkeypatch.chdir(tmp_path)  # a packaged name resolves from any directory
    exp = Experiment.from_yaml(
        "tiny",
        run_dir="runs/nb",
        fit={"seeds": [3]},  # merges into the section: the file's fit.cpus_per_worker stays
        tune__enabled=False,
        set=["training.max_epochs=1", "fit.seeds=[4, 5]"],  # applied last
    )
    cfg = exp.config
    assert cfg.name == "tiny" and cfg.data.embedding_dim == 16  # the rest of tiny.yaml
    assert cfg.run_dir == str(tmp_path / "runs" / "nb") and exp.run_dir == tmp_path / "runs" / "nb"
    assert cfg.tune.enabled is False and cfg.training.max_epochs == 1
    assert cfg.fit.seeds == [4, 5] and cfg.fit.cpus_per_worker == 1.0
    # A path works too, and the loader's checks apply as on the command line.
    assert Experiment.from_yaml(REPO / "configs" / "tiny.yaml").config.models == cfg.models
    with pytest.raises(ConfigError, match="unknown key"):
        Experiment.from_yaml("tiny", training={"max_epoch": 3})
    with pytest.raises(ConfigError, match="not found"):
        Experiment.from_yaml("no-such-config")
    # An unknown stage is refused before anything touches the run directory.
    with pytest.raises(ConfigError, match=r"unknown stage\(s\) \['fitt'\]"):
        exp.run(stages=["prepare", "fitt"])
    with pytest.raises(ConfigError, match="unknown stage"):
        exp.run(from_stage="tunes")
    assert not (tmp_path / "runs").exists()


def _results_run(tmp_path: Path) -> Path:
    """A run directory with prepared tensors, two models' predictions over two seeds, and aggregate's outputs."""
    from mmrec_ray.evaluation.aggregate import aggregate

    run_dir = tmp_path / "run"
    data = tiny_prepared(n_pes=90, n_test=60, num_items=5)
    data.save(run_dir / "prepared" / "tensors")
    write_model_predictions(data, run_dir / "predictions", models=("popular", "keyword"), seeds=(0, 1))
    aggregate(run_dir, reference="popular", bootstrap_resamples=100, echo=None)
    return run_dir


def test_results_is_one_tidy_frame_of_seed_means_and_bootstrap_cis(tmp_path):
    from mmrec_ray import Experiment
    from mmrec_ray.api import RESULT_COLUMNS
    from mmrec_ray.config import load_config

    run_dir = _results_run(tmp_path)
    exp = Experiment(load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run_dir}"]))
    results = exp.results()
    assert list(results.columns) == RESULT_COLUMNS
    per_seed = pd.read_csv(run_dir / "results" / "metrics.csv")
    expected = per_seed.groupby(["model", "subset", "metric", "k"])["value"].agg(["mean", "std", "count"])
    got = results.set_index(["model", "subset", "metric", "k"]).sort_index()
    assert len(got) == len(expected)
    np.testing.assert_allclose(got["mean"], expected["mean"])
    np.testing.assert_allclose(got["std"], expected["std"])
    assert (got["n_seeds"] == 2).all() and set(got.index.get_level_values("model")) == {"popular", "keyword"}
    main = results[results["k"] == 3]
    assert main["ci_low"].notna().all() and main["ci_high"].notna().all()
    assert (main["ci_low"] <= main["ci_high"]).all() and main["ci_low"].between(0, 1).all()
    assert results[results["k"] != 3]["ci_low"].isna().all()  # aggregate bootstraps the main cut-off only

    table = exp.table3()
    assert isinstance(table, pd.DataFrame) and set(table["model"]) == {"popular", "keyword"}
    assert "union_map@3_mean" in table.columns
    assert "|" in exp.table3("markdown") and "\\begin{table" in exp.table3("latex")
    assert set(exp.predictions(["keyword"])["model"]) == {"keyword"}
    pd.testing.assert_frame_equal(exp.metrics(), per_seed)


def test_results_before_aggregate_says_what_to_run(tmp_path):
    from mmrec_ray import Experiment

    exp = Experiment.from_yaml("tiny", run_dir=str(tmp_path / "empty"))
    with pytest.raises(MmrecError, match="run the aggregate stage first"):
        exp.results()


def test_evaluate_in_memory_matches_the_stored_protocol(tmp_path):
    from mmrec_ray import evaluate
    from mmrec_ray.data.tensors import PreparedData
    from mmrec_ray.evaluation.evaluate import evaluate as evaluate_files

    run_dir = _results_run(tmp_path)
    frame = pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "predictions").glob("*.parquet"))])
    metrics = evaluate(frame, run_dir)
    assert list(metrics.columns) == ["model", "seed", "subset", "metric", "k", "value"]
    stored = pd.read_csv(run_dir / "results" / "metrics.csv")
    key = ["model", "seed", "subset", "metric", "k"]
    pd.testing.assert_frame_equal(
        metrics.sort_values(key).reset_index(drop=True), stored.sort_values(key).reset_index(drop=True)
    )
    # The same numbers from a PreparedData, from files, and at other cut-offs.
    data = PreparedData.load(run_dir / "prepared" / "tensors")
    pd.testing.assert_frame_equal(evaluate(frame, data), metrics)
    pd.testing.assert_frame_equal(evaluate(run_dir / "predictions", run_dir), metrics)
    pd.testing.assert_frame_equal(evaluate(frame, data, ks=[2]), evaluate_files(data, frame, ks=[2]).metrics)


def test_evaluate_on_a_dataset_folder_matches_the_cli(tmp_path):
    from mmrec_ray import evaluate
    from mmrec_ray.cli import main
    from mmrec_ray.commands.evaluate import dataset_labels
    from mmrec_ray.evaluation.predictions import scores_to_frame

    root = write_tiny_dataset(tmp_path / "dataset")
    labels = dataset_labels(root)
    test = labels.test_indices()
    rng = np.random.default_rng(0)
    frame = pd.concat(
        scores_to_frame(
            "popular",
            seed,
            labels.purchase_event_id[test],
            labels.item_ids,
            rng.random((len(test), len(labels.item_ids))),
        )
        for seed in (0, 1)
    )
    metrics = evaluate(frame, root, ks=[1, 3])
    frame.to_parquet(tmp_path / "predictions.parquet", index=False)
    argv = ["evaluate", "--data", str(root), "--predictions", str(tmp_path / "predictions.parquet")]
    assert main([*argv, "--out", str(tmp_path / "cli"), "--ks", "1,3"]) == 0
    cli = pd.read_csv(tmp_path / "cli" / "metrics.csv")
    pd.testing.assert_frame_equal(metrics.reset_index(drop=True), cli, check_dtype=False)


def readme_example() -> str:
    """The first Python code block of README.md's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert "Experiment.from_yaml(" in code and len(code.strip().splitlines()) <= 8
    monkeypatch.chdir(tmp_path)  # the example's relative run_dir lands here
    namespace: dict = {}
    exec(compile(code, "README.md (Python API)", "exec"), namespace)
    exp = namespace["exp"]
    assert exp.run_dir == tmp_path / "runs" / "notebook"
    assert (exp.run_dir / "results" / "table3.md").exists()
    results = exp.results()
    assert set(results["model"]) == set(exp.config.models) and (results["n_seeds"] == 1).all()
    printed = capsys.readouterr().out
    assert "ci_low" in printed and "popular" in printed
