"""A changed config never reuses stale outputs: each stage's fingerprint covers exactly the config fields it
reads and the stage before it; a run with outputs of another config refuses in one line naming the fields, and
`--from STAGE` redoes that stage and everything after it, keeping earlier timings in the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mmrec_ray.config import load_config
from mmrec_ray.errors import ConfigError
from mmrec_ray.pipeline import fingerprints
from mmrec_ray.pipeline.runner import Pipeline, run_pipeline

REPO = Path(__file__).resolve().parents[2]
STAGES = fingerprints.STAGES


def _changed_stages(tmp_path, *overrides: str) -> list[str]:
    base = fingerprints.fingerprints(load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={tmp_path}"]))
    other = fingerprints.fingerprints(
        load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={tmp_path}", *overrides])
    )
    return [s for s in STAGES if base[s] != other[s]]


@pytest.mark.parametrize(
    ("override", "first"),
    [
        ("data.scale=0.02", "generate"),
        ("fidelity.vocabulary.share=per_occurrence", "prepare"),
        ("embed.max_length=64", "embed"),
        ("tune.units=[32]", "tune"),
        ("training.max_epochs=9", "tune"),
        ("hyperparameters={conversation: {units: 32}}", "tune"),
        ("fit.seeds=[0]", "fit"),
        ("evaluation.alpha=0.01", "aggregate"),
        ("analyses.max_events=5", "analyses"),
    ],
)
def test_a_change_reaches_its_stage_and_everything_after_it(tmp_path, override, first):
    assert _changed_stages(tmp_path, override) == list(STAGES[STAGES.index(first) :])


@pytest.mark.parametrize(
    "override",
    [
        "tune.cpus_per_trial=2",
        "tune.max_concurrent_trials=1",
        "fit.cpus_per_worker=2",
        "embed.num_actors=2",
        "embed.batch_size=32",
        "training.num_threads=1",
        "analyses.use_ray=false",
        "analyses.enabled=false",
        "run_dir=/elsewhere",
    ],
)
def test_resources_and_switches_that_write_nothing_change_no_fingerprint(tmp_path, override):
    assert _changed_stages(tmp_path, override) == []


def test_tune_enabled_matters_to_fit_not_to_tune(tmp_path):
    assert _changed_stages(tmp_path, "tune.enabled=false") == list(STAGES[STAGES.index("fit") :])


def _fake_finished_run(run_dir: Path, overrides: list[str]) -> Pipeline:
    """A run dir whose manifest says every stage ran with ``overrides`` (no real outputs needed for the check)."""
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run_dir}", *overrides])
    pipeline = Pipeline(cfg, log=lambda line: None)
    pipeline.manifest.write_config()
    for stage in STAGES:
        pipeline.manifest.record(stage, "done", 1.5)  # fingerprints as the runner records them
        pipeline.manifest.stages[stage]["fingerprint"] = pipeline.fingerprints[stage]
    pipeline.manifest.write()
    for relative in ("tune/best_configs.yaml", "predictions/x.parquet", "results/table3.md"):
        (run_dir / relative).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / relative).write_text("old")
    return pipeline


def test_outputs_of_another_config_are_refused_naming_the_fields(tmp_path):
    run_dir = tmp_path / "run"
    _fake_finished_run(run_dir, [])
    config_before = (run_dir / "config.yaml").read_text()
    cfg = load_config(
        REPO / "configs" / "tiny.yaml", [f"run_dir={run_dir}", "tune.units=[32]", "training.max_epochs=9"]
    )
    with pytest.raises(ConfigError) as error:
        run_pipeline(cfg, log=lambda line: None)
    message = str(error.value)
    assert "\n" not in message
    assert "tune stage" in message and "--from tune" in message
    assert "tune.units: [16] -> [32]" in message and "training.max_epochs: 2 -> 9" in message
    # Nothing was touched: config.yaml still describes the outputs on disk.
    assert (run_dir / "config.yaml").read_text() == config_before
    assert (run_dir / "tune" / "best_configs.yaml").read_text() == "old"


def test_a_run_from_before_fingerprints_is_checked_through_its_config_yaml(tmp_path):
    run_dir = tmp_path / "run"
    pipeline = _fake_finished_run(run_dir, [])
    for record in pipeline.manifest.stages.values():
        del record["fingerprint"]
    pipeline.manifest.write()
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run_dir}", "evaluation.alpha=0.01"])
    with pytest.raises(ConfigError, match=r"aggregate stage.*evaluation.alpha: 0.05 -> 0.01"):
        Pipeline(cfg).check_outputs_current()
    Pipeline(load_config(run_dir / "config.yaml")).check_outputs_current()  # the same config passes


def test_from_removes_that_stage_and_later_outputs_only(tmp_path):
    run_dir = tmp_path / "run"
    _fake_finished_run(run_dir, [])
    (run_dir / "prepared" / "tensors").mkdir(parents=True)
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run_dir}", "fit.seeds=[0]"])
    lines: list[str] = []
    with pytest.raises(ConfigError, match="--from fit"):
        Pipeline(cfg, lines.append).check_outputs_current("aggregate")  # would keep stale fit outputs
    Pipeline(cfg, lines.append).check_outputs_current("fit")
    assert (run_dir / "tune" / "best_configs.yaml").exists() and (run_dir / "prepared" / "tensors").exists()
    assert not (run_dir / "predictions").exists() and not (run_dir / "results").exists()
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert stages["tune"]["status"] == "done" and "fingerprint" in stages["tune"]
    assert stages["fit"]["status"] == "removed" and "fingerprint" not in stages["fit"]
    assert any("removed predictions" in line for line in lines)


def test_a_skip_keeps_the_timing_of_the_execution_that_wrote_the_outputs(tmp_path):
    pipeline = _fake_finished_run(tmp_path / "run", [])
    pipeline.manifest.record("fit", "skipped", 0.0, pipeline.fingerprints["fit"])
    assert (
        pipeline.manifest.stages["fit"]["seconds"] == 1.5
        and pipeline.manifest.stages["fit"]["status"] == "done"
    )
    pipeline.manifest.record("fit", "done", 7.0, pipeline.fingerprints["fit"])
    assert pipeline.manifest.stages["fit"]["seconds"] == 7.0
    assert [e["seconds"] for e in pipeline.manifest.stages["fit"]["earlier"]] == [1.5]


@pytest.mark.slow
def test_a_changed_grid_is_refused_then_redone_with_from(ray_local, tmp_path):
    """The reported case end to end: a finished run re-run with another tune grid and epoch cap."""
    run_dir = tmp_path / "run"
    base = [f"run_dir={run_dir}", "analyses.enabled=false", "models=[popular,conversation]", "fit.seeds=[0]"]
    run_pipeline(load_config(REPO / "configs" / "tiny.yaml", base), log=lambda line: None)
    before = json.loads((run_dir / "manifest.json").read_text())["stages"]

    changed = load_config(REPO / "configs" / "tiny.yaml", [*base, "tune.units=[32]", "training.max_epochs=3"])
    with pytest.raises(ConfigError, match=r"tune\.units: \[16\] -> \[32\]"):
        run_pipeline(changed, log=lambda line: None)
    assert yaml.safe_load((run_dir / "tune" / "best_configs.yaml").read_text())["conversation"]["units"] == 16

    lines: list[str] = []
    run_pipeline(changed, log=lines.append, from_stage="tune")
    assert yaml.safe_load((run_dir / "tune" / "best_configs.yaml").read_text())["conversation"]["units"] == 32
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["training"]["max_epochs"] == 3
    after = json.loads((run_dir / "manifest.json").read_text())["stages"]
    assert after["prepare"]["seconds"] == before["prepare"]["seconds"]  # not "skipped, 0.0 s"
    assert after["tune"]["status"] == "done" and after["tune"]["fingerprint"] != before["tune"]["fingerprint"]
    assert any(line.startswith("[tune] done") for line in lines) and any(
        line.startswith("[fit] done") for line in lines
    )


def _stages_changed_by(monkeypatch, tmp_path, change) -> list[str]:
    """The stages whose fingerprint differs after ``change()`` edits a model class (as editing its file would)."""
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={tmp_path}"])
    before = fingerprints.fingerprints(cfg)
    change()
    after = fingerprints.fingerprints(cfg)
    return [s for s in STAGES if before[s] != after[s]]


def test_a_search_space_declared_in_a_model_file_is_part_of_the_tune_fingerprint(monkeypatch, tmp_path):
    from mmrec_ray.models import registry, space

    cls = registry.get("conversation")
    declared = dict(cls.search_space)

    def add_learning_rate():
        monkeypatch.setattr(cls, "search_space", {**declared, "learning_rate": space.grid([1e-3, 1e-2])})

    assert _stages_changed_by(monkeypatch, tmp_path, add_learning_rate) == list(
        STAGES[STAGES.index("tune") :]
    )
    values = fingerprints.stage_values(load_config(REPO / "configs" / "tiny.yaml"), "tune")
    assert values["tune.search_space.conversation.learning_rate"] == "grid([0.001, 0.01])"


def test_the_fingerprint_has_the_space_after_the_configs_overrides(monkeypatch, tmp_path):
    """tiny.yaml replaces units by [16] for every model: a model file's other unit list changes no search."""
    from mmrec_ray.models import registry, space

    cls = registry.get("conversation")
    declared = dict(cls.search_space)

    def other_units():
        monkeypatch.setattr(cls, "search_space", {**declared, "units": space.grid([8, 1024])})

    assert _stages_changed_by(monkeypatch, tmp_path, other_units) == []
    values = fingerprints.stage_values(load_config(REPO / "configs" / "tiny.yaml"), "tune")
    assert values["tune.search_space.conversation.units"] == "grid([16])"
    assert values["tune.search_space.popular"] == "nothing searched"


def test_a_models_own_hyperparameter_default_is_part_of_the_tune_fingerprint(monkeypatch, tmp_path):
    from mmrec_ray.models import registry

    cls = registry.get("keyword")

    def new_default():
        monkeypatch.setattr(cls, "hyperparameters", {**cls.hyperparameters, "learning_rate": 0.5})

    assert _stages_changed_by(monkeypatch, tmp_path, new_default) == list(STAGES[STAGES.index("tune") :])


def test_outputs_tuned_over_another_declared_space_are_refused_naming_it(monkeypatch, tmp_path):
    from mmrec_ray.models import registry, space

    run_dir = tmp_path / "run"
    _fake_finished_run(run_dir, [])
    cfg = load_config(REPO / "configs" / "tiny.yaml", [f"run_dir={run_dir}"])  # the same config
    cls = registry.get("session")
    monkeypatch.setattr(cls, "search_space", {**cls.search_space, "learning_rate": space.grid([1e-3, 1e-2])})
    with pytest.raises(ConfigError) as error:
        Pipeline(cfg, log=lambda line: None).check_outputs_current()
    message = str(error.value)
    assert "tune stage" in message and "--from tune" in message and "declared search space" in message
    monkeypatch.undo()
    Pipeline(cfg, log=lambda line: None).check_outputs_current()  # the model file as it was: current
