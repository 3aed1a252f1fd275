"""What interrupted or failed work leaves behind: `prepare --force` on bad input keeps the previous, consistent
outputs; the pipeline never trusts tensors without prepare's marker; a resumed run removes the temporary files
of killed writes, the embed stage's staging folders and the Ray Train folders of attempts it will not use."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmrec_ray.cli import main
from mmrec_ray.config import load_config
from mmrec_ray.data.prepare import prepare
from mmrec_ray.errors import DataError
from mmrec_ray.pipeline import train
from mmrec_ray.pipeline.runner import STAGES, Pipeline, run_pipeline
from mmrec_ray.training.runner import checkpoint_path, predictions_path
from tests.data.conftest import edit, write_tiny_dataset

from .conftest import random_prepared

REPO = Path(__file__).resolve().parents[2]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


def _quiet(_line: str) -> None:
    pass


# ------------------------------------------------------------------------------------------ prepare --force
def test_prepare_force_with_bad_input_keeps_the_previous_outputs_and_their_marker(tmp_path, capsys):
    """Validation comes before any deletion: the marker still describes the tensors next to it (the old data),
    so nothing trusts outputs that do not match it, and a re-run on the old data is still a no-op."""
    data = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    prepare(data, run, log=_quiet)
    before = _snapshot(run / "prepared")
    marker = (run / "prepared" / "prepared.json").read_text()

    edit(data / "data_users.csv", "\n1,1,1,,10.0\n", "\none,1,1,,10.0\n")  # a user id that is no number
    with pytest.raises(DataError, match="data_users.csv"):
        prepare(data, run, force=True, log=_quiet)
    assert _snapshot(run / "prepared") == before
    assert main(["prepare", "--data", str(data), "--run-dir", str(run), "--force"]) == 2
    assert "data_users.csv" in capsys.readouterr().err
    assert _snapshot(run / "prepared") == before
    assert (run / "prepared" / "prepared.json").read_text() == marker

    edit(data / "data_users.csv", "\none,1,1,,10.0\n", "\n1,1,1,,10.0\n")  # the old data again: still done
    assert prepare(data, run, log=_quiet)["status"] == "up-to-date"


def test_pipeline_does_not_trust_tensors_without_the_prepare_marker(tmp_path, monkeypatch):
    """Tensors without prepared.json are what a prepare that failed half-way leaves: the embed stage must run
    again (it used to be skipped, and the tensors stage then found no embeddings to build from)."""
    data = write_tiny_dataset(tmp_path / "data", embeddings=False, text=True)
    run = tmp_path / "run"
    random_prepared().save(run / "prepared" / "tensors")  # tensors/meta.json exists, prepared.json does not
    cfg = load_config(
        REPO / "configs" / "tiny.yaml", [f"run_dir={run}", f"data.path={data}", "data.source=released"]
    )
    pipeline = Pipeline(cfg, log=_quiet)
    decided = {}
    monkeypatch.setattr(pipeline, "_stage", lambda name, needed, *_args: decided.setdefault(name, needed))
    pipeline.embed()
    pipeline.tensors()
    assert decided == {"embed": True, "tensors": True}


# ------------------------------------------------------------------------------------------ resume cleanup
def test_resumed_run_removes_the_leftovers_of_a_killed_one(tmp_path, monkeypatch):
    run = tmp_path / "run"
    tensors = run / "prepared" / "tensors"
    parquet = run / "prepared" / "parquet"
    tensors.mkdir(parents=True)
    leftovers = [
        tensors / ".targets.npy.k2j3h4g5.tmp",  # atomic writes killed mid-way (0 bytes, or partial)
        run / ".manifest.json.a_b9x0yz.tmp",
        parquet / ".conversation_embeddings.tmp-1a2b3c4d",  # embed's staging, empty when killed early
        parquet / ".conversation_embeddings.old-5e6f7a8b",  # a swap killed between its renames
    ]
    leftovers[0].write_bytes(b"")
    leftovers[1].write_text('{"name": "tin')
    leftovers[2].mkdir(parents=True)
    leftovers[3].mkdir()
    (leftovers[3] / "part-00001.parquet").write_bytes(b"old part")
    kept = [
        tensors / "targets.npy",
        parquet / "conversation_embeddings" / "part-00001.parquet",
        run / "notes.tmp",  # not ours: no hidden temp name
        run / "ray" / "tune" / "tiny_tune_level0" / ".tune_state.abcdefgh.tmp",  # Ray's own state is Ray's
    ]
    for path in kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"data")

    for stage in STAGES:  # only the resume bookkeeping runs: every stage is already done
        monkeypatch.setattr(Pipeline, stage, lambda self, *a: None)
    lines: list[str] = []
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run}"])
    run_pipeline(cfg, log=lines.append)

    assert not [p for p in leftovers if p.exists()], lines
    assert all(p.read_bytes() == b"data" for p in kept)
    assert any("4 leftovers of an interrupted run" in line for line in lines), lines


def _finish(run_dir: Path, cfg, seeds) -> None:
    for name in train.fit_models(cfg):
        for seed in seeds:
            for path in (checkpoint_path(run_dir, name, seed), predictions_path(run_dir, name, seed)):
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"fitted")


def test_fit_removes_the_train_folders_of_finished_seeds(tmp_path):
    run = tmp_path / "run"
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run}", "fit.seeds=[0, 1]"])
    _finish(run, cfg, [0, 1])
    trainers = run / "ray" / "train"
    for seed in (0, 1, 7):  # seed 7: another config's seed on this run directory, not this run's to delete
        checkpoint = trainers / f"tiny__seed{seed}" / "checkpoint_2026-01-01_00-00-00.000000"
        checkpoint.mkdir(parents=True)
        (checkpoint / "conversation.pt").write_bytes(b"model")
    assert train.run_fit(cfg, run, {}, log=_quiet) == 0
    assert sorted(p.name for p in trainers.iterdir()) == ["tiny__seed7"]


def test_an_unfinished_seed_keeps_only_the_checkpoint_its_snapshot_names(tmp_path):
    """A killed attempt can leave checkpoint folders that Ray Train's snapshot never recorded; a restarted
    trainer resumes from the snapshot's checkpoint only, so the others are dead weight."""
    trainer = tmp_path / "ray" / "train" / "tiny__seed1"
    used, unused = "checkpoint_2026-01-01_00-00-01.000000", "checkpoint_2026-01-01_00-00-09.000000"
    for name in (used, unused):
        (trainer / name).mkdir(parents=True)
        (trainer / name / "conversation.pt").write_bytes(b"model")
    snapshot = {"checkpoint_results": [{"checkpoint_dir_name": used}], "latest_checkpoint_result": None}
    (trainer / "checkpoint_manager_snapshot.json").write_text(json.dumps(snapshot))
    (trainer / ".validate_storage_marker").write_bytes(b"")

    assert train.discard_unused_checkpoints(str(trainer)) == [unused]
    assert sorted(p.name for p in trainer.iterdir()) == sorted(
        [used, "checkpoint_manager_snapshot.json", ".validate_storage_marker"]
    )


def test_a_trainer_folder_without_snapshot_keeps_nothing_it_would_not_read(tmp_path):
    """No snapshot: Ray Train starts that seed from scratch, so no checkpoint folder there is ever read."""
    trainer = tmp_path / "tiny__seed0"
    (trainer / "checkpoint_2026-01-01_00-00-01.000000").mkdir(parents=True)
    assert train.discard_unused_checkpoints(str(trainer)) == ["checkpoint_2026-01-01_00-00-01.000000"]
    assert list(trainer.iterdir()) == []


def test_a_truncated_manifest_does_not_stop_a_resume(tmp_path):
    """A 0-byte manifest.json (written before atomic writes were synced, then a crash) holds only timings."""
    from mmrec_ray.pipeline.manifest import Manifest

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_bytes(b"")
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run}"])
    manifest = Manifest(run, cfg)
    manifest.record("generate", "skipped", 0.1)
    assert json.loads((run / "manifest.json").read_text())["stages"]["generate"]["status"] == "skipped"


def test_results_of_an_aggregate_killed_half_way_are_not_trusted(tmp_path, monkeypatch):
    """aggregate writes table3.md before its statistics and figures; a kill in between used to leave a run whose
    resume skipped aggregate for good. Only aggregate.json, written last, marks the results complete."""
    from mmrec_ray.config import load_config
    from mmrec_ray.pipeline.runner import Pipeline

    run = tmp_path / "run"
    (run / "predictions").mkdir(parents=True)
    (run / "predictions" / "popular__seed0.parquet").write_bytes(b"x")
    (run / "results").mkdir()
    (run / "results" / "table3.md").write_text("| half |")  # newer than the predictions, statistics missing
    pipeline = Pipeline(
        load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run}"]), log=lambda line: None
    )
    calls = []
    monkeypatch.setattr(pipeline, "_stage", lambda name, needed, action, *a: calls.append((name, needed)))
    pipeline.aggregate()
    (run / "results" / "aggregate.json").write_text("{}")
    pipeline.aggregate()
    assert calls == [("aggregate", True), ("aggregate", False)]


def test_a_snapshot_cut_short_by_a_full_disk_drops_the_whole_trainer_folder(tmp_path):
    """Ray Train writes its snapshot in place; a full disk leaves it empty or cut, and a trainer restarted on it
    dies at start-up (CheckpointManagerInitializationError) — found by bench/faults.py's full-disk case."""
    trainer = tmp_path / "tiny__seed1"
    (trainer / "checkpoint_2026-01-01_00-00-01.000000").mkdir(parents=True)
    (trainer / "checkpoint_manager_snapshot.json").write_text('{"checkpoint_results": [{"checkpoint_dir')
    assert train.discard_unused_checkpoints(str(trainer)) == ["*"]
    assert not trainer.exists()
