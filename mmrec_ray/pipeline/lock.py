"""One run per storage: ``RUN_DIR/mmrec.lock`` names the process that runs the pipeline there.

Two runs on one run directory would resume each other's live Tune experiment and overwrite each other's
predictions, so `mmrec run`, `mmrec tune`, `mmrec train` and the jobs take the lock before they read or write
anything, and a second run refuses with one line naming the holder (pid, host, start time).

* The lock is a small JSON file: ``pid``, ``host``, ``started`` (ISO time), ``started_at`` (epoch seconds),
  ``process_start`` (the holder's start time in /proc, to tell a reused pid from the holder), ``token`` (unique
  per acquisition), ``command``. It is removed on normal exit, on an error and on Ctrl-C (the runner holds it in
  a ``with`` block).
* Stale rule: a lock of this host whose process is gone (``kill -9``, a crashed driver, a power cut) is taken
  over, with one logged line. A lock of another host is never judged stale, whatever its age: a long run on
  another node looks exactly like a dead one from here. If that run is really gone, ``--break-lock`` removes
  its lock (logged) and the run takes it.
* Local run directories use an atomic create (``O_CREAT | O_EXCL``); a stale lock is moved aside with a rename
  and checked before it is deleted, so two runs that both found it stale cannot both take over.
* URI run directories (``s3://``, ``gs://``, ``file://``) keep the lock object at ``URI/mmrec.lock`` through
  pyarrow.fs, as Ray and ``ray_env`` reach that storage. Object stores offer no portable create-if-absent, so the
  lock is check-then-write, then read back: a run that reads back another run's token refuses. Race window: two
  runs that start within the time of one write and one read of a small object (well under a second) can both
  find the lock absent and, if each reads back its own token before the other's write lands, both proceed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from mmrec_ray.errors import MmrecError, storage_error

LOCK_NAME = "mmrec.lock"
# An unreadable lock younger than this is one being written (create, then write): wait for it, do not judge it.
_WRITING_SECONDS = 10.0


class RunDirectoryInUse(MmrecError):
    """Another run holds the run directory's lock."""


def _is_uri(run_dir: str | os.PathLike) -> bool:
    return "://" in str(run_dir)


def lock_location(run_dir: str | os.PathLike) -> str:
    """The lock's path (local) or URI (remote storage)."""
    if _is_uri(run_dir):
        return str(run_dir).rstrip("/") + "/" + LOCK_NAME
    return str(Path(run_dir) / LOCK_NAME)


def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # after the command name, which may hold spaces


def _alive(record: dict[str, Any]) -> bool:
    """Whether the holder of a lock of this host still runs (and is the same process, not a reused pid)."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    recorded, current = record.get("process_start"), _process_start(pid)
    return recorded is None or current is None or recorded == current


def _describe(record: dict[str, Any]) -> str:
    since = record.get("started") or "an unknown time"
    age = ""
    if isinstance(record.get("started_at"), (int, float)):
        minutes = max(0, int((time.time() - record["started_at"]) // 60))
        age = f", {minutes // 60} h {minutes % 60} min ago" if minutes >= 60 else f", {minutes} min ago"
        age = ", under a minute ago" if minutes == 0 else age
    return f"pid {record.get('pid')} on host {record.get('host')} since {since}{age}"


# --------------------------------------------------------------------------------------------------- storage
class _Local:
    def __init__(self, path: str):
        self.path = Path(path)

    def create(self, content: bytes) -> bool:
        """Create the lock with ``content`` unless it exists (atomically); False when it exists."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, content)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return True

    def read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def remove_if(self, content: bytes) -> bool:
        """Remove the lock if it still holds ``content``; False when another process changed it meanwhile."""
        aside = self.path.with_name(f"{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)  # atomic: of two runs removing one stale lock, one gets it
        except FileNotFoundError:
            return False
        if aside.read_bytes() == content:
            aside.unlink()
            return True
        # Another run replaced the lock between our read and our rename: put its lock back.
        try:
            os.link(aside, self.path)
        except FileExistsError:
            pass
        aside.unlink()
        return False


class _Remote:
    def __init__(self, uri: str):
        import pyarrow.fs as pafs

        self.uri = uri
        self.fs, self.path = pafs.FileSystem.from_uri(uri)

    def create(self, content: bytes) -> bool:
        if self.read() is not None:
            return False
        self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self.path) as stream:
            stream.write(content)
        return True

    def read(self) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path) as stream:
                return stream.read()
        except FileNotFoundError:
            return None

    def age(self) -> float:
        info = self.fs.get_file_info(self.path)
        return time.time() - info.mtime.timestamp() if info.mtime else 0.0

    def remove_if(self, content: bytes) -> bool:
        if self.read() != content:
            return False
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            return False
        return True


def _storage(run_dir: str | os.PathLike) -> _Local | _Remote:
    location = lock_location(run_dir)
    return _Remote(location) if _is_uri(run_dir) else _Local(location)


def _parse(content: bytes | None) -> dict[str, Any] | None:
    try:
        record = json.loads(content or b"")
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------------------------------- API
def read_lock(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The lock record of a run directory, or None when nobody holds it."""
    return _parse(_storage(run_dir).read())


def break_lock(run_dir: str | os.PathLike, log: Callable[[str], None] = print) -> dict[str, Any] | None:
    """Remove the lock whoever holds it (``--break-lock``): for a run on another host that is known to be gone.
    Returns the removed record (None when there was no lock)."""
    storage = _storage(run_dir)
    content = storage.read()
    if content is None:
        return None
    record = _parse(content) or {}
    if storage.remove_if(content):
        log(f"mmrec: broke the lock of {_describe(record)} on {run_dir} (--break-lock)")
    return record


class RunLock:
    """``with RunLock(cfg.run_dir):`` — hold the run directory for this process, or raise RunDirectoryInUse."""

    def __init__(self, run_dir: str | os.PathLike, log: Callable[[str], None] = print):
        self.run_dir = str(run_dir)
        self.location = lock_location(run_dir)
        self.log = log
        self.token = uuid.uuid4().hex
        self.held = False
        self._content = b""

    def _record(self) -> dict[str, Any]:
        now = time.time()
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.fromtimestamp(now).astimezone().isoformat(timespec="seconds"),
            "started_at": now,
            "process_start": _process_start(os.getpid()),
            "token": self.token,
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
        }

    def _in_use(self, why: str) -> RunDirectoryInUse:
        return RunDirectoryInUse(
            f"run directory in use: {self.run_dir}: {why} (wait for that run to end; if it is gone, re-run with "
            f"--break-lock, or delete {self.location})"
        )

    def acquire(self) -> RunLock:
        try:
            return self._acquire(_storage(self.run_dir))
        except OSError as exc:
            error = storage_error(exc, self.location, writing=True)
            if error is None:
                raise
            raise error from exc

    def _acquire(self, storage: _Local | _Remote) -> RunLock:
        self._content = json.dumps(self._record(), indent=2).encode() + b"\n"
        deadline = time.monotonic() + 2 * _WRITING_SECONDS
        while time.monotonic() < deadline:
            if storage.create(self._content):
                # No create-if-absent on object stores: did another run write over ours meanwhile?
                if isinstance(storage, _Remote):
                    landed = storage.read()
                    if landed != self._content:
                        holder = _parse(landed) or {}
                        raise self._in_use(f"held by {_describe(holder)} (it took the lock as this run did)")
                self.held = True
                return self
            content = storage.read()
            if content is None:  # released between our create and our read
                continue
            record = _parse(content)
            if record is None:
                if storage.age() < _WRITING_SECONDS:
                    time.sleep(0.5)
                    continue
                raise self._in_use(f"the lock {self.location} is unreadable")
            if record.get("host") != socket.gethostname():  # its process cannot be checked from here
                raise self._in_use(f"held by {_describe(record)}")
            if _alive(record):
                raise self._in_use(f"held by {_describe(record)}")
            if storage.remove_if(content):
                self.log(
                    f"mmrec: taking over the lock of {_describe(record)}: that process is no longer running"
                )
        raise self._in_use(f"other runs kept taking and releasing the lock {self.location}")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            _storage(self.run_dir).remove_if(self._content)
        except OSError as exc:  # the run's own error matters more; the next run takes a dead pid's lock over
            self.log(f"mmrec: could not remove the lock {self.location}: {exc}")

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_exc) -> None:
        self.release()
