"""The command line as a user meets it: one vocabulary (old spellings still work, with a note), `--version`,
`mmrec models`, `mmrec run --print-config`, a fast `--help`, the packaged configs, `mmrec evaluate` on the folders
the other commands take and write, and the warning about a test split too small to mean anything."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mmrec_ray.cli import build_parser, main
from mmrec_ray.config import load_config
from tests.data.conftest import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


def _parse(argv: list[str]) -> dict:
    args = vars(build_parser(only=argv[0]).parse_args(argv))
    args.pop("_run")
    return args


# ------------------------------------------------------------------------------------------- vocabulary
@pytest.mark.parametrize(
    "old, new",
    [
        (["prepare", "--data", "d", "--out", "r"], ["prepare", "--data", "d", "--run-dir", "r"]),
        (["fit", "--run", "r", "--model", "popular"], ["fit", "--run-dir", "r", "--model", "popular"]),
        (["analyze", "--run", "r"], ["analyze", "--run-dir", "r"]),
        (["embed", "--run", "r"], ["embed", "--run-dir", "r"]),
        (
            ["evaluate", "--run", "r", "--predictions", "p", "--out", "o"],
            ["evaluate", "--run-dir", "r", "--predictions", "p", "--out", "o"],
        ),
        (["run", "--storage", "r"], ["run", "--run-dir", "r"]),
        (["tune", "--storage", "r"], ["tune", "--run-dir", "r"]),
        (["fit", "--storage", "r"], ["fit", "--run-dir", "r"]),
    ],
)
def test_old_spellings_still_work_and_print_one_deprecation_line(old, new, capsys):
    assert _parse(new) == _parse(old)
    err = capsys.readouterr().err.strip().splitlines()
    spelling = next(arg for arg in old if arg not in new)
    assert err == [f"mmrec {old[0]}: warning: {spelling} is deprecated; use --run-dir"], err


def test_new_spellings_print_nothing(capsys):
    _parse(["prepare", "--data", "d", "--run-dir", "r"])
    _parse(["run", "--run-dir", "r"])
    assert capsys.readouterr().err == ""


def test_train_is_a_deprecated_name_of_the_fit_stage(tmp_path, capsys, monkeypatch):
    import mmrec_ray.pipeline.runner as runner

    calls = []
    monkeypatch.setattr(runner, "run_stage", lambda cfg, stage, **kw: calls.append((cfg.run_dir, stage)))
    assert main(["train", "--config", TINY, "--run-dir", str(tmp_path / "r")]) == 0
    assert main(["fit", "--config", TINY, "--run-dir", str(tmp_path / "r")]) == 0
    assert calls == [(str(tmp_path / "r"), "fit")] * 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["mmrec train: warning: `mmrec train` is deprecated; use `mmrec fit` (the same Ray stage)"]


def test_fit_stage_refuses_local_only_flags(tmp_path, capsys):
    assert main(["fit", "--config", TINY, "--run-dir", str(tmp_path), "--seeds", "0"]) == 2
    assert "--seeds" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- --version, models
def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    version = importlib.metadata.version("mmrec_ray")
    assert capsys.readouterr().out.strip() == f"mmrec {version}"
    import mmrec_ray

    assert mmrec_ray.__version__ == version


def test_models_lists_every_registered_model(capsys):
    from mmrec_ray.models import registry

    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:] if line.strip()}
    assert set(rows) == set(registry.names())
    latent = rows["latent_feature"]
    assert "Latent Feature" in latent and "batch_size" in latent
    components = set(registry.names(include_components=True)) - set(registry.names())
    assert components  # generators and encoders exist, and only --all shows them
    assert main(["models", "--all"]) == 0
    rows = {line.split()[0] for line in capsys.readouterr().out.splitlines()[2:] if line.strip()}
    assert rows == set(registry.names(include_components=True))


# ------------------------------------------------------------------------------------------- --print-config
def test_print_config_prints_yaml_that_loads_back_to_the_same_config(tmp_path, capsys):
    run = tmp_path / "run"
    argv = [
        "run",
        "--config",
        TINY,
        "--run-dir",
        str(run),
        "--set",
        "training.max_epochs=3",
        "--print-config",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.yaml").write_text(printed)
    expected = load_config(TINY, ["training.max_epochs=3", f"run_dir={run.resolve()}"])
    assert load_config(tmp_path / "printed.yaml") == expected
    assert not run.exists()  # nothing ran


# ------------------------------------------------------------------------------------------- --help
def test_help_imports_neither_torch_nor_ray():
    code = (
        "import sys; from mmrec_ray.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'ray', 'pandas', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr


def test_every_help_renders_and_shows_defaults(capsys):
    from mmrec_ray.cli import _command_names

    for name in _command_names():
        with pytest.raises(SystemExit):
            build_parser(only=name).parse_args([name, "--help"])
        text = capsys.readouterr().out
        assert "SPEC" not in text, name
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: demo)" in text
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 4.0)" in text and "encoder batch size (default: 64)" in text


def test_help_defaults_match_the_library():
    from mmrec_ray.commands import _reading, prepare
    from mmrec_ray.data import prepare as library
    from mmrec_ray.data.released import DEFAULT_CHUNK_BYTES
    from mmrec_ray.data.vocab import VOCAB_THRESHOLD

    assert _reading.DEFAULT_CHUNK_MB * _reading.MEBIBYTE == DEFAULT_CHUNK_BYTES
    assert _reading.VOCAB_THRESHOLD == VOCAB_THRESHOLD
    options = library.PrepareOptions()
    assert (prepare.ENCODER, prepare.ENCODER_BATCH_SIZE, prepare.ENCODER_MAX_LENGTH) == (
        options.encoder,
        options.encoder_batch_size,
        options.encoder_max_length,
    )
    assert prepare.EMBEDDING_MODES == library.EMBEDDING_MODES


# ------------------------------------------------------------------------------------------- packaged configs
def test_the_packaged_default_config_resolves_from_another_cwd(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["name"] == "demo" and cfg["run_dir"] == str(tmp_path / "runs" / "demo")
    for spelling in ("tiny", "tiny.yaml", "configs/tiny.yaml"):
        assert main(["run", "--config", spelling, "--print-config"]) == 0
        assert yaml.safe_load(capsys.readouterr().out)["name"] == load_config(TINY).name
    assert main(["run", "--config", "no_such_config", "--print-config"]) == 2
    assert "no_such_config" in capsys.readouterr().err


def test_every_repository_config_is_packaged():
    from mmrec_ray import configs

    for path in sorted((REPO / "configs").glob("*.yaml")):
        packaged = configs.PACKAGED / path.name
        assert packaged.is_file() and packaged.read_bytes() == path.read_bytes(), path.name


# ------------------------------------------------------------------------------------------- evaluate
def _tiny_predictions(directory: Path, model: str = "popular", seeds=(0, 1)) -> list[Path]:
    """Predictions in the layout `mmrec fit` writes, for the tiny dataset's test PEs 9 and 10 (items 2, 5, 7)."""
    from mmrec_ray.evaluation.predictions import scores_to_frame, write_predictions

    paths = []
    for seed in seeds:
        scores = np.array([[0.2, 0.3, 0.9], [0.8, 0.1 + seed, 0.2]])
        frame = scores_to_frame(model, seed, np.array([9, 10]), np.array([2, 5, 7]), scores)
        paths.append(write_predictions(directory / f"{model}__seed{seed}.parquet", frame))
    return paths


def test_evaluate_accepts_the_dataset_folder_and_the_fit_predictions_folder(tmp_path, capsys):
    from mmrec_ray.data.prepare import prepare

    data = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    prepare(data, run, log=lambda _: None)
    _tiny_predictions(run / "predictions")

    argv = ["evaluate", "--data", str(data), "--predictions", str(run / "predictions")]
    assert main([*argv, "--out", str(tmp_path / "from_data")]) == 0
    assert main(["evaluate", "--run-dir", str(run), "--out", str(tmp_path / "from_run")]) == 0
    from_data = pd.read_csv(tmp_path / "from_data" / "metrics.csv")
    from_run = pd.read_csv(tmp_path / "from_run" / "metrics.csv")
    pd.testing.assert_frame_equal(from_data, from_run)
    assert set(from_data["seed"]) == {0, 1} and set(from_data["subset"]) >= {"union", "intersection"}
    capsys.readouterr()

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        main(["evaluate", "--data", str(data), "--predictions", str(empty), "--out", str(tmp_path / "o")])
        == 2
    )
    assert f"{empty}: no *.parquet prediction files" in capsys.readouterr().err
    assert (
        main(["evaluate", "--data", str(tmp_path), "--predictions", str(run / "predictions"), "--out", "o"])
        == 2
    )
    err = capsys.readouterr().err
    assert "not a dataset folder" in err and "no prepared tensors" in err


# ------------------------------------------------------------------------------------------- small test split
def test_a_test_split_too_small_to_say_anything_is_a_warning(tmp_path, capsys):
    data = write_tiny_dataset(tmp_path / "data")  # 10 PEs: 2 in the test split
    assert main(["validate", "--data", str(data)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmrec validate: warning: the test split has only 2 PEs"), err
    assert main(["prepare", "--data", str(data), "--run-dir", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("mmrec prepare: warning: the test split has only 2 PEs"), err


def test_no_warning_for_a_test_split_of_a_useful_size(capsys):
    from mmrec_ray.commands._reading import MIN_TEST_PES, warn_if_small_test_split

    warn_if_small_test_split("mmrec validate", MIN_TEST_PES)
    assert capsys.readouterr().err == ""
    warn_if_small_test_split("mmrec validate", MIN_TEST_PES - 1)
    assert "warning" in capsys.readouterr().err
