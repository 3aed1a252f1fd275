"""`mmrec evaluate` and `mmrec aggregate` end to end on a tiny prepared dataset (no cluster)."""

import numpy as np
import pandas as pd
import pytest

from mmrec_ray.cli import main
from mmrec_ray.evaluation.predictions import scores_to_frame, write_predictions
from mmrec_ray.evaluation.tables import DISPLAY_NAMES
from tests.evaluation.helpers import ALL_MODELS, tiny_prepared, write_model_predictions


@pytest.fixture
def run_dir(tmp_path):
    data = tiny_prepared(n_pes=300, n_test=150, num_items=6)
    data.save(tmp_path / "run" / "prepared" / "tensors")
    return tmp_path / "run", data


def test_evaluate_cli_writes_metrics_and_per_pe(run_dir, tmp_path, capsys):
    run, data = run_dir
    paths = write_model_predictions(
        data, tmp_path / "preds", models=("popular", "conversation"), seeds=(0, 1)
    )
    # A prediction for a training PE is ignored: only test PEs are scored.
    train = scores_to_frame("popular", 0, data.purchase_event_id[:1], data.item_ids, np.ones((1, 6)))
    extra = write_predictions(tmp_path / "preds" / "train.parquet", train.assign(model="train_only"))
    out = tmp_path / "eval"
    assert (
        main(
            ["evaluate", "--data", str(run), "--predictions", *map(str, paths), str(extra), "--out", str(out)]
        )
        == 0
    )
    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == ["model", "seed", "subset", "metric", "k", "value"]
    assert set(metrics["metric"]) == {"hr", "map"} and set(metrics["k"]) == {1, 2, 3, 4, 5}
    subsets = metrics.groupby("model")["subset"].agg(set)
    assert subsets["popular"] == {"union", "conversations_only", "sessions_only", "intersection"}
    assert subsets["conversation"] == {"conversations_only", "intersection"}  # no union, no sessions_only
    assert "train_only" not in subsets
    per_pe = pd.read_parquet(out / "per_pe.parquet")
    assert list(per_pe.columns) == ["model", "seed", "purchase_event_id", "subset", "k", "hit", "ap"]
    test_ids = set(data.purchase_event_id[data.test_indices()].tolist())
    assert set(per_pe["purchase_event_id"]) <= test_ids
    assert per_pe[per_pe["model"] == "popular"]["purchase_event_id"].nunique() == len(test_ids)
    # per-seed metric = mean of the per-PE outcomes
    pop = per_pe[(per_pe["model"] == "popular") & (per_pe["seed"] == 0) & (per_pe["k"] == 3)]
    value = metrics.query(
        "model == 'popular' and seed == 0 and subset == 'union' and metric == 'map' and k == 3"
    )
    assert value["value"].iloc[0] == pytest.approx(pop["ap"].mean())
    # The tensors folder itself is accepted too.
    out2 = tmp_path / "eval2"
    tensors = run / "prepared" / "tensors"
    assert main(["evaluate", "--data", str(tensors), "--predictions", str(paths[0]), "--out", str(out2)]) == 0
    assert "HR@3" in capsys.readouterr().out


def test_evaluate_cli_reports_bad_predictions_in_one_line(run_dir, tmp_path, capsys):
    run, data = run_dir
    frame = scores_to_frame("popular", 0, np.array([123456]), data.item_ids, np.ones((1, 6)))
    bad = write_predictions(tmp_path / "bad.parquet", frame)
    code = main(["evaluate", "--run-dir", str(run), "--predictions", str(bad), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown purchase_event_id 123456" in err and "bad.parquet" in err
    assert (
        main(["evaluate", "--data", str(tmp_path), "--predictions", str(bad), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "no prepared tensors" in capsys.readouterr().err


def test_evaluate_rejects_a_model_serving_part_of_a_subset(run_dir, tmp_path, capsys):
    run, data = run_dir
    test_ids = data.purchase_event_id[data.test_indices()]
    scores = np.ones((len(test_ids), 6))
    scores[0] = np.nan  # one PE of a subset missing, the rest of that subset served
    bad = write_predictions(
        tmp_path / "partial.parquet", scores_to_frame("m", 0, test_ids, data.item_ids, scores)
    )
    assert (
        main(["evaluate", "--run-dir", str(run), "--predictions", str(bad), "--out", str(tmp_path / "o")])
        == 2
    )
    assert f"first missing purchase_event_id {test_ids[0]}" in capsys.readouterr().err


def test_aggregate_writes_every_output_and_table3(run_dir, tmp_path, capsys):
    run, data = run_dir
    skill = dict.fromkeys(ALL_MODELS, 0.5) | {"popular": 0.0, "latent_feature": 0.95}
    write_model_predictions(data, run / "predictions", seeds=(0, 1, 2), skill=skill)
    external = write_model_predictions(data, tmp_path / "elsewhere", models=("my_model",), seeds=(0,))
    assert (
        main(
            [
                "aggregate",
                "--run-dir",
                str(run),
                "--predictions",
                str(external[0]),
                "--bootstrap-resamples",
                "200",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    results, figures = run / "results", run / "figures"
    for name in (
        "metrics.csv",
        "per_pe.parquet",
        "significance.csv",
        "table3.md",
        "table3.tex",
        "table3.csv",
        "seed_summary.csv",
        "bootstrap_ci.csv",
        "pairwise_tests.csv",
        "friedman.csv",
    ):
        assert (results / name).stat().st_size > 0, name
    for name in ("map_at_k.png", "hr_at_k.png", "cd_diagram.png"):
        assert (figures / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    significance = pd.read_csv(results / "significance.csv")
    assert {"model", "reference", "subset", "metric", "k", "test", "p_value", "significant"} <= set(
        significance.columns
    )
    assert set(significance["reference"]) == {"latent_feature"}
    popular_union = significance.query("model == 'popular' and subset == 'union' and k == 3")
    assert popular_union["significant"].all()  # a random ranker vs a near-perfect one on 150 PEs

    md = (results / "table3.md").read_text()
    for model in ALL_MODELS:
        assert f"| {DISPLAY_NAMES[model]} |" in md
    assert "| my_model |" in md
    assert "▼" in md and "**" in md and "%)" in md  # marks carry their direction (Popular: worse)
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ")[1:]
        for line in md.splitlines()
        if line.startswith("| ")
    }
    assert rows["Conversation"][0] == "-" and rows["Conversation"][4] == "-"  # union HR, sessions-only HR
    assert rows["Web Session"][2] == "-"  # conversations-only HR
    assert rows["Latent Feature"][0].startswith("**")
    assert md.splitlines()[0] in printed  # Table 3 printed at the end

    table = pd.read_csv(results / "table3.csv")
    assert table["model"].tolist()[: len(ALL_MODELS)] == list(ALL_MODELS)
    assert {"union_hr@3_mean", "union_hr@3_std", "intersection_map@3_significant"} <= set(table.columns)
    friedman = pd.read_csv(results / "friedman.csv")
    assert {"average_rank", "critical_difference", "friedman_p_value"} <= set(friedman.columns)
    pairwise = pd.read_csv(results / "pairwise_tests.csv")
    assert (pairwise["p_holm"] >= pairwise["p_value"] - 1e-12).all()
    bootstrap = pd.read_csv(results / "bootstrap_ci.csv")
    assert (bootstrap["ci_low"] <= bootstrap["mean"] + 1e-12).all() and (
        bootstrap["mean"] <= bootstrap["ci_high"] + 1e-12
    ).all()


def test_aggregate_without_predictions_is_a_clear_error(run_dir, capsys):
    run, _ = run_dir
    assert main(["aggregate", "--run-dir", str(run)]) == 2
    assert "no prediction files" in capsys.readouterr().err
