"""The fault matrix's own checks (bench/faults.py): what counts as a leftover, as identical metrics, and the table.
The matrix itself runs `mmrec run` dozens of times and is a benchmark, not a test."""

from __future__ import annotations

import pandas as pd

from bench import faults


def _run_dir(root, extra=()):
    (root / "results").mkdir(parents=True)
    (root / "predictions").mkdir()
    pd.DataFrame({"model": ["popular"], "hr@3": [0.5]}).to_csv(root / "results" / "metrics.csv", index=False)
    pd.DataFrame({"pe": [1, 2], "hit": [1, 0]}).to_parquet(root / "results" / "per_pe.parquet")
    pd.DataFrame({"pe": [1, 2], "score": [0.1, 0.2]}).to_parquet(
        root / "predictions" / "popular__seed0.parquet"
    )
    (root / "stages.log").write_text(
        "2026-01-01T00:00:00 [tune] done in 3.5s\n2026-01-01T00:00:01 [fit] done in 1.0s\n"
    )
    for relative in extra:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if relative.startswith("checkpoints/conv") else b"x")
    return root


def test_leftovers_are_temp_files_empty_files_and_paths_the_baseline_lacks(tmp_path):
    baseline = _run_dir(
        tmp_path / "baseline",
        [
            "ray/tune/exp/experiment_state-2026-11-29_16-40-00.json",
            "ray/tune/exp/t_000/events.out.tfevents.17959.vm",
        ],
    )
    resumed = _run_dir(
        tmp_path / "resumed",
        [
            "ray/tune/exp/experiment_state-2026-11-30_09-00-01.json",  # Ray's timestamp: not a leftover
            "ray/tune/exp/t_000/events.out.tfevents.18000.host2",
            "ray/tune/exp/t_001/checkpoint_000000/model.pt",  # a trial ASHA stopped in the baseline only
            "checkpoints/.model.pt.abc.tmp",
            "checkpoints/conversation__seed0.pt",  # 0 bytes: a write cut by a full disk
            "ray/train/attempt_2/model.pt",
            "logs/run.log",
        ],
    )
    (resumed / "embed_staging" / "part-3").mkdir(parents=True)
    found = faults._leftovers(resumed, faults._tree(baseline))
    assert found == [
        "checkpoints/.model.pt.abc.tmp",
        "checkpoints/conversation__seed0.pt",
        "ray/train/attempt_2/model.pt",
        "embed_staging/part-3/ (empty)",
    ]
    assert faults._leftovers(_run_dir(tmp_path / "clean"), faults._tree(_run_dir(tmp_path / "b2"))) == []


def test_identical_compares_metrics_and_every_prediction(tmp_path):
    baseline = faults._metrics(_run_dir(tmp_path / "a"))
    assert faults._identical(_run_dir(tmp_path / "b"), baseline) == (True, "")
    changed = _run_dir(tmp_path / "c")
    pd.DataFrame({"pe": [1, 2], "score": [0.1, 0.3]}).to_parquet(
        changed / "predictions" / "popular__seed0.parquet"
    )
    assert faults._identical(changed, baseline) == (False, "popular__seed0.parquet differs")
    missing = _run_dir(tmp_path / "d")
    (missing / "results" / "metrics.csv").unlink()
    assert faults._identical(missing, baseline)[0] is False


def test_stage_timings_come_from_stages_log(tmp_path):
    assert faults._done_stages(_run_dir(tmp_path / "a")) == {"tune": 3.5, "fit": 1.0}


def test_a_case_passes_only_when_fault_resume_metrics_and_tree_are_all_right(tmp_path):
    good = faults.Case("kill9-mid", "fit", -9, True, "in stage", 0, True, [])
    assert good.passed
    assert not faults.Case("kill9-mid", "fit", -9, True, "in stage", 0, True, ["x.tmp"]).passed
    assert not faults.Case("sigint-mid", "fit", 0, False, "in stage", 0, True, []).passed
    assert not faults.Case("kill9-mid", "fit", -9, True, "in stage", 0, False, []).passed
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n")
    faults.update_readme(faults.markdown([good], 42.0, "python -m bench.faults"), readme)
    faults.update_readme(faults.markdown([good, good], 42.0, "python -m bench.faults"), readme)
    text = readme.read_text()
    assert text.count(faults.TABLE_BEGIN) == 1 and "2 of 2 cases pass" in text


def test_a_mid_stage_fault_that_lands_after_a_short_stage_is_inconclusive_not_failed():
    missed = faults.Case("kill9-mid", "prepare", -9, False, "missed the stage", 0, True, [])
    good = faults.Case("kill9-mid", "fit", -9, True, "in stage", 0, True, [])
    assert missed.inconclusive and not missed.passed and not good.inconclusive
    table = faults.markdown([good, missed], 60.0, "python -m bench.faults")
    assert "1 of 1 cases pass; 1 inconclusive" in table
    assert "| kill9-mid | prepare | missed the stage | -9 | n/a |" in table
