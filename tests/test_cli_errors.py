"""Errors a user can act on end the CLI with one line naming the path or the flag and a non-zero exit code, never
a traceback: invalid YAML in ``--set``, a full disk during prepare, read-only or unwritable storage."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from mmrec_ray.cli import main
from tests.data.conftest import write_tiny_dataset

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "override, detail",
    [
        ("models=[a", "expected ',' or ']'"),
        ("x=!!python/object:os.system", "python/object:os.system"),
        ("name={a: 1", "expected ',' or '}'"),
    ],
)
def test_set_with_invalid_yaml_is_one_line(tmp_path, capsys, override, detail):
    code = main(["run", "--config", TINY, "--run-dir", str(tmp_path / "run"), "--set", override])
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("mmrec run: error: --set") and repr(override) in line and detail in line, line
    assert not (tmp_path / "run").exists()


def test_full_disk_during_prepare_is_one_line_and_leaves_no_partial_files(tmp_path, capsys, monkeypatch):
    data = write_tiny_dataset(tmp_path / "data")
    run = tmp_path / "run"
    real_save = np.save

    def disk_full(handle, array, **kwargs):
        if array.size > 4:  # the first sizeable tensor: part of it is written, then the device is full
            handle.write(b"\x93NUMPY partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(handle, array, **kwargs)

    monkeypatch.setattr(np, "save", disk_full)
    code = main(["prepare", "--data", str(data), "--run-dir", str(run)])
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("mmrec prepare: error: cannot write: ") and "no space left on device" in line
    assert str(run / "prepared" / "tensors") in line, line
    files = [p for p in run.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith(".tmp")], files
    assert not [p for p in files if p.stat().st_size == 0], files
    assert not (run / "prepared" / "prepared.json").exists()


def _read_only(monkeypatch, root: Path) -> None:
    """Make ``root`` read-only: chmod where that binds; as root (which writes anyway) refuse every open for
    writing below it with EROFS, as a read-only mount does."""
    if os.geteuid() != 0:
        for path in [root, *root.rglob("*")]:
            if path.is_dir():
                path.chmod(0o555)
        return
    real_open = os.open
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def read_only_open(path, flags, *args, **kwargs):
        if str(os.fspath(path)).startswith(str(root)) and flags & writing:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)


def test_run_on_read_only_storage_is_one_line(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("finished: yes\n")  # a run finished earlier, now on read-only storage
    _read_only(monkeypatch, run)
    try:
        code = main(["run", "--config", TINY, "--run-dir", str(run)])
    finally:
        run.chmod(0o755)
    line = _one_line(capsys.readouterr().err)
    assert code == 2
    assert line.startswith("mmrec run: error: cannot write: " + str(run)), line
    assert "read-only file system" in line or "permission denied" in line
    assert (run / "config.yaml").read_text() == "finished: yes\n"


@pytest.mark.parametrize(
    "code, why",
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EROFS, "read-only file system"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_storage_os_errors_from_anywhere_are_one_line(tmp_path, capsys, monkeypatch, code, why):
    """An OSError raised outside io.py (a library writing on its own) still ends in one line naming its path."""
    import mmrec_ray.commands.prepare as command

    def fail(*_args, **_kwargs):
        raise OSError(code, os.strerror(code), "/storage/run/prepared/x.parquet")

    monkeypatch.setattr(command, "prepare", fail)
    assert main(["prepare", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "/storage/run/prepared/x.parquet" in line and why in line, line


def test_other_os_errors_keep_their_traceback(tmp_path, monkeypatch):
    """Only the errors a user can fix are shortened: anything else is a bug to report, with its traceback."""
    import mmrec_ray.commands.prepare as command

    def fail(*_args, **_kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO), "/storage/x")

    monkeypatch.setattr(command, "prepare", fail)
    with pytest.raises(OSError):
        main(["prepare", "--data", str(tmp_path), "--run-dir", str(tmp_path / "run")])


def test_ctrl_c_that_surfaces_as_another_exception_still_reads_as_an_interruption(monkeypatch, capsys):
    """Ctrl-C during a C extension's import comes back as ImportError ("cannot load module more than once");
    the run was interrupted, not broken: exit 130 with the resume hint, no traceback."""
    import os
    import signal

    import mmrec_ray.commands.models as models_command

    def interrupted_import(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            import time

            time.sleep(1)  # the signal is delivered here
        except KeyboardInterrupt:
            raise ImportError("cannot load module more than once per process") from None

    monkeypatch.setattr(models_command, "run", interrupted_import)
    assert main(["models"]) == 130
    assert "interrupted; finished work is kept, re-run to resume" in capsys.readouterr().err
    with pytest.raises(ImportError):  # without a Ctrl-C the same error is a bug and keeps its traceback
        monkeypatch.setattr(models_command, "run", lambda args: (_ for _ in ()).throw(ImportError("real")))
        main(["models"])
