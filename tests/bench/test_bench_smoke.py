"""Smoke runs of every benchmark function on tiny inputs: row schema, ratio consistency, and that the naive
baseline feeds the models exactly the tensors the project's FeatureStore does. No speed is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import common
from bench.train import (
    FIELDS,
    NaiveFeatureStore,
    TimedFeatureStore,
    bench_fit_stage,
    bench_train,
    fields_for,
)
from mmrec_ray.config import TrainingConfig
from mmrec_ray.data.features import FeatureStore
from mmrec_ray.models import registry


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from mmrec_ray.data.prepare import prepare
    from mmrec_ray.data.synthetic_files import generate
    from mmrec_ray.data.tensors import PreparedData

    root = tmp_path_factory.mktemp("bench")
    generate(root / "data", 0.003, 0, text=False, embedding_dim=8)
    prepare(root / "data", root / "run", log=lambda _line: None)
    return PreparedData.load(root / "run" / "prepared" / "tensors", mmap=False)


def _check_rows(rows):
    assert rows
    for row in rows:
        assert tuple(row) == common.ROW_KEYS
        assert row["value"] > 0 and row["baseline_value"] > 0
        if common.higher_is_better(row["metric"]):
            assert math.isclose(row["ratio"], row["value"] / row["baseline_value"], rel_tol=1e-12)
        else:
            assert math.isclose(row["ratio"], row["baseline_value"] / row["value"], rel_tol=1e-12)
        common.check_row(row)


def test_ratio_direction_and_check_row_rejects_inconsistent_rows():
    fast = common.make_row("b", "seconds/epoch", 1.0, "naive", 4.0, "cpu", "cmd")
    assert fast["ratio"] == 4.0
    throughput = common.make_row("b", "tokens/s", 300.0, "plain", 100.0, "cpu", "cmd")
    assert throughput["ratio"] == 3.0
    with pytest.raises(ValueError):
        common.check_row({**fast, "ratio": 0.25})
    with pytest.raises(ValueError):
        common.check_row({k: v for k, v in fast.items() if k != "device"})


def test_results_and_readme_table_roundtrip(tmp_path):
    rows = [common.make_row("train/x", "PEs/s", 10.0, "naive", 5.0, "cpu", "python -m bench.run_cpu")]
    path = common.write_results("demo", rows, tmp_path)
    assert json.loads(path.read_text()) == rows
    readme = tmp_path / "README.md"
    readme.write_text(f"# Bench\n\nintro\n\n{common.TABLE_BEGIN}\nold\n{common.TABLE_END}\n\nafter\n")
    common.update_readme(readme, tmp_path)
    text = readme.read_text()
    assert "old" not in text and "| demo | train/x | PEs/s |" in text and "**2.00×**" in text
    assert text.startswith("# Bench") and text.rstrip().endswith("after")


def test_every_registered_model_has_naive_fields():
    assert set(registry.names(include_components=True)) <= set(FIELDS)


@pytest.mark.parametrize("name", [n for n in registry.names(include_components=True) if FIELDS[n]])
def test_naive_batches_equal_feature_store_batches(tiny_data, name):
    store = FeatureStore(tiny_data)
    naive = NaiveFeatureStore.wrap(store, fields_for([name]))
    indices = np.arange(min(40, tiny_data.num_pes))
    (fast_batch,) = list(store.iterate(indices, 64))
    (naive_batch,) = list(naive.iterate(indices, 64))
    assert torch.equal(naive_batch.index, fast_batch.index)
    for field in fields_for([name]):
        expected = getattr(fast_batch, field)
        got = getattr(naive_batch, field)
        assert got.shape == expected.shape, field
        assert torch.equal(got.to(expected.dtype), expected), field


def test_bench_train_rows_for_all_models(tiny_data):
    rows = bench_train(tiny_data, None, device_label="cpu", command="pytest", log=lambda _l: None)
    _check_rows(rows)
    benchmarks = {row["benchmark"] for row in rows}
    for name in ("conversation", "session", "keyword", "latent_feature", "knowledge_distillation",
                 "generative_imputation", "neutral_imputation", "relative_representation"):  # fmt: skip
        assert f"train/{name}" in benchmarks
    assert {row["metric"] for row in rows} == {"seconds/epoch", "PEs/s"}


def test_naive_store_trains_the_same_model_to_the_same_loss(tiny_data):
    """Same seed, same batches, same module: the two data paths give the same losses."""
    from bench.train import time_one_epoch
    from mmrec_ray.models.params import default_params

    store = FeatureStore(tiny_data)
    training = TrainingConfig(max_epochs=1, patience=1000, device="cpu")
    _, fast = time_one_epoch(
        "keyword", TimedFeatureStore.wrap(store), {}, training, default_params("keyword")
    )
    _, naive = time_one_epoch(
        "keyword",
        NaiveFeatureStore.wrap(store, fields_for(["keyword"])),
        {},
        training,
        default_params("keyword"),
    )
    for a, b in zip(fast.network.parameters(), naive.network.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


def test_bench_fit_stage_row(tiny_data):
    rows = bench_fit_stage(tiny_data, seeds=(0,), models=["conversation", "late_fusion"], max_epochs=1,
                           device_label="cpu", command="pytest", log=lambda _l: None)  # fmt: skip
    _check_rows(rows)
    assert len(rows) == 1


def test_bench_embed_rows_with_a_tiny_encoder(tmp_path):
    from bench.embed import bench_embed, synthetic_sentences
    from mmrec_ray.embed.random_bert import write_random_bert

    table = synthetic_sentences(40)
    assert table.num_rows == 40
    encoder = write_random_bert(tmp_path / "bert", table.column("text").to_pylist())
    rows = bench_embed(
        table, str(encoder), batch_size=16, max_length=32, command="pytest", with_ray=False,
        with_sentence_transformers=False, log=lambda _l: None,
    )  # fmt: skip
    _check_rows(rows)
    assert {row["metric"] for row in rows} == {"sentences/s", "tokens/s"}


def test_scale_rows_linear_baseline():
    from bench.scale import scale_rows

    measured = {
        0.1: {step: (1.0, 100.0) for step in ("generate", "prepare", "epoch", "aggregate")},
        1.0: {step: (8.0, 500.0) for step in ("generate", "prepare", "epoch", "aggregate")},
    }
    rows = scale_rows(measured, "cpu", "pytest")
    _check_rows(rows)
    timing = [r for r in rows if r["metric"].startswith("seconds")]
    assert len(timing) == 4 and all(math.isclose(r["ratio"], 10.0 / 8.0) for r in timing)


@pytest.mark.slow
def test_measure_scale_runs_every_step(tmp_path):
    from bench.scale import STEPS, measure_scale

    measured = measure_scale(0.003, tmp_path, log=lambda _l: None)
    assert set(measured) == set(STEPS)
    assert all(seconds > 0 and peak > 0 for seconds, peak in measured.values())


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM needs Linux /proc")
def test_run_measured_reports_the_childs_own_peak_not_the_parents():
    import sys

    from bench.scale import run_measured

    ballast = bytearray(400 * 2**20)  # this process holds 400 MiB, touched page by page
    ballast[:: 2**12] = b"x" * len(ballast[:: 2**12])
    _, small = run_measured([sys.executable, "-c", "x = 1"])
    touch = "b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096])"
    _, big = run_measured([sys.executable, "-c", touch])
    assert small < 200 < 300 < big < 400
    del ballast


@pytest.mark.slow
def test_gpu_entry_dry_run_on_cpu(tmp_path):
    """bench.run_gpu's code path (embed rows, then the paper.yaml pipeline in a subprocess) on a CPU."""
    from bench import run_gpu

    committed_table = common.README.read_text()
    run_gpu.main(
        ["--cpu-dry-run", "--sentences", "300", "--plain-sentences", "50", "--pipeline-scale", "0.01",
         "--pipeline-set", "models=[popular,conversation,session,late_fusion]", "--results", str(tmp_path)]
    )  # fmt: skip
    rows = json.loads((tmp_path / "embed_gpu.json").read_text())
    _check_rows(rows)
    by_benchmark = {row["benchmark"] for row in rows}
    assert {"embed/ray_data_stage", "pipeline/paper_yaml", "pipeline/paper_yaml/fit"} <= by_benchmark
    assert "pipeline/paper_yaml/analyses" not in by_benchmark  # switched off: no row
    assert all(row["device"].startswith("cpu dry run") for row in rows)
    # results written elsewhere get their own README table; the committed one is untouched
    assert (tmp_path / "README.md").exists() and common.README.read_text() == committed_table


def test_ingest_parsers_row_measures_each_parser_on_the_same_cut_sample(tmp_path):
    from bench import ingest

    part = tmp_path / "data_conversations_embedding_1.csv"
    rows = [f"{i}.0,1,user," + ",".join(f"{(i * 7 + j) / 13:.6f}" for j in range(4)) for i in range(1, 400)]
    part.write_text(
        "conversation_id,sentence_number,sentence_speaker,embedding_1,embedding_2,embedding_3,embedding_4\n"
        + "\n".join(rows)
        + "\n"
    )
    rates = ingest.parsers(part, tmp_path, 5_000)  # cut inside a line: the sample ends at the last full line
    assert {"pyarrow, types inferred", "pandas.read_csv"} <= set(rates)
    assert all(rate > 0 for rate in rates.values())
    assert not (tmp_path / "parsers_sample.csv").exists()
