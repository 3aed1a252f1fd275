"""What a run prints: by default one progress display per stage (done/total, ETA) and the stage lines; Ray's own
output (Tune status tables, worker logs, Ray Data progress logs, start-up warnings) off, kept in Ray's session
logs, which ``RUN_DIR/logs/ray`` links to. ``mmrec run -v`` shows everything, as Ray prints it.

The switch is process-wide and must be set before Ray starts (``ray.init`` reads ``log_to_driver`` once).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

_state = {"verbose": False}


def set_verbose(verbose: bool) -> None:
    _state["verbose"] = bool(verbose)


def verbose() -> bool:
    return _state["verbose"]


def quiet_ray_environment() -> None:
    """Environment switches that must precede ``ray.init`` (raylets and workers inherit them)."""
    if verbose():
        return
    # Tune warns about experiment snapshots every few seconds on small trials; the warning is about speed only.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Ray Data sets its loggers' level from its own config when it starts (after ours); this variable wins.
    # CRITICAL, not ERROR: a failed task is logged by the executor and raised again in the driver, where the
    # stage prints it as one line and keeps its trace in RUN_DIR/logs.
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "CRITICAL")


def ray_init_options() -> dict:
    """``ray.init`` keyword arguments: worker output stays in Ray's session logs unless verbose."""
    if verbose():
        return {"logging_level": "WARNING"}
    return {"logging_level": "ERROR", "log_to_driver": False}


def quiet_ray_libraries() -> None:
    """After ``import ray``: Ray Data's progress logs and bars (a bar only on a terminal, and only verbose)."""
    if verbose():
        return
    for name in ("ray.data", "ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _quiet_raylet_messages()
    try:
        from ray.data import DataContext

        context = DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
    except (ImportError, AttributeError):  # pragma: no cover - Ray Data is a declared dependency
        pass


def _quiet_raylet_messages() -> None:
    """The driver prints the raylet's warnings (e.g. "16 PYTHON worker processes have been started ... 8x the
    maximum expected startup concurrency" while five seed trainers start on two cores) whatever ``log_to_driver``
    says; they are in the raylet's own log in the session folder (``RUN_DIR/logs/ray``). Ray has no switch for
    it, so its printer is wrapped (private API: if it moves, the lines show again, nothing breaks)."""
    try:
        import ray._private.worker as ray_worker
    except ImportError:  # pragma: no cover - Ray is a declared dependency
        return
    original = ray_worker.print_to_stdstream
    if getattr(original, "_mmrec_quiet", False):
        return

    def print_to_stdstream(data, *args, **kwargs):
        if not verbose() and isinstance(data, dict) and data.get("pid") == "raylet":
            return None
        return original(data, *args, **kwargs)

    print_to_stdstream._mmrec_quiet = True
    ray_worker.print_to_stdstream = print_to_stdstream


def link_ray_logs(run_dir: Path) -> Path | None:
    """``RUN_DIR/logs/ray`` -> this Ray session's log folder (where worker output goes when it is not shown)."""
    try:
        import ray

        logs = Path(ray._private.worker._global_node.get_logs_dir_path())  # no public API for the path
    except Exception:  # a joined cluster's logs live on its nodes; nothing local to link
        return None
    link = Path(run_dir) / "logs" / "ray"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(logs, target_is_directory=True)
    return link


@contextlib.contextmanager
def driver_output(log_file: Path):
    """What Ray prints on the driver's stdout inside the block (Tune's experiment table, which it prints at any
    verbosity) goes to ``log_file`` unless verbose."""
    if verbose():
        yield
        return
    log_file = Path(log_file)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a") as handle, contextlib.redirect_stdout(handle):
        yield


class Progress:
    """done/total with ETA for one stage: a live bar on a terminal (tqdm), else a line at most every
    ``every`` seconds and at the end, so that logs of a long unattended run stay short but show it moving."""

    def __init__(self, total: int, what: str, unit: str, every: float = 30.0, stream=None) -> None:
        self.total, self.what, self.unit, self.every = int(total), what, unit, every
        self.stream = stream or sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self._last_line = float("-inf")  # the first update prints at once (monotonic time starts near boot)
        self._bar = None
        if self.stream.isatty() and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=f"  {what}", unit=f" {unit}", file=self.stream, leave=False)

    def eta(self) -> str:
        if self.done <= 0 or self.done >= self.total:
            return ""
        seconds = (time.monotonic() - self.started) / self.done * (self.total - self.done)
        return f", ETA {int(seconds // 60)}:{int(seconds % 60):02d}"

    def update_to(self, done: int) -> None:
        done = min(int(done), self.total)
        if done == self.done:
            return
        if self._bar is not None:
            self._bar.update(done - self.done)
        self.done = done
        now = time.monotonic()
        if self._bar is None and (now - self._last_line >= self.every or done == self.total):
            self._last_line = now
            print(f"  {self.what}: {done}/{self.total} {self.unit}{self.eta()}", file=self.stream, flush=True)

    def update(self, step: int = 1) -> None:
        self.update_to(self.done + step)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
