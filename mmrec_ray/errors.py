"""User-facing errors: one clear line naming the file, row and column (or the flag), turned into exit code 2 by the
CLI. ``storage_error`` gives the same treatment to the OS errors a user can fix: a full disk, a quota, read-only
storage, missing permissions."""

from __future__ import annotations

import errno
import re


class MmrecError(Exception):
    """Base class for errors that the CLI prints as one line instead of a traceback."""


class DataError(MmrecError):
    """Bad input data. Row numbers are 1-based data rows as a spreadsheet shows them (header = row 1)."""

    def __init__(self, file: str, message: str, row: int | None = None, column: str | None = None):
        self.file = str(file)
        self.row = row
        self.column = column
        self.detail = message
        where = self.file
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")


class ConfigError(MmrecError):
    """Bad configuration: unknown key, wrong type, impossible combination."""


class StorageError(MmrecError):
    """The run's storage refused a write (or a read): full, over quota, read-only, not permitted."""


_RESUME = "free space there, then re-run: finished work is kept"
_ELSEWHERE = "or pass another --run-dir/--out"
# errno -> (what failed, why, what to do); the errors outside this table are bugs and keep their traceback.
_STORAGE_ERRORS = {
    errno.ENOSPC: ("cannot write", "no space left on device", _RESUME),
    errno.EDQUOT: ("cannot write", "disk quota exceeded", _RESUME),
    errno.EROFS: (
        "cannot write",
        "read-only file system",
        f"a run needs writable storage, even to resume a finished run; copy it somewhere writable {_ELSEWHERE}",
    ),
    errno.EACCES: ("cannot access", "permission denied", f"check its permissions for this user {_ELSEWHERE}"),
    errno.EPERM: ("cannot access", "operation not permitted", f"check its permissions {_ELSEWHERE}"),
}


def storage_error(exc: BaseException, path: str | None = None, writing: bool = False) -> StorageError | None:
    """The one-line ``StorageError`` for an OSError a user can fix, naming ``path`` (else the error's own file
    name); None for any other error. ``writing``: the caller knows the failed operation was a write."""
    if not isinstance(exc, OSError) or exc.errno not in _STORAGE_ERRORS:
        return None
    what, why, todo = _STORAGE_ERRORS[exc.errno]
    what = "cannot write" if writing else what
    where = path or exc.filename
    return StorageError(f"{what}: {where}: {why} ({todo})" if where else f"{what}: {why} ({todo})")


# --------------------------------------------------------------------------------------------------- from Ray
_USER_ERROR_LINE = re.compile(r"mmrec_ray\.errors\.(\w+Error): (.+)")


def user_error_in(exc: BaseException) -> MmrecError | None:
    """The ``MmrecError`` (or fixable storage error) that ``exc`` wraps, if any.

    Ray re-raises an error from a task, actor or trainer wrapped in its own exceptions (``RayTaskError``,
    ``ActorDiedError``, ``TrainingFailedError``), with the original as ``cause``, ``__cause__`` or only as text
    when it could not travel back; the one line the user should read is the original's."""
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if (
            isinstance(current, MmrecError)
            and not isinstance(cause, BaseException)
            and "\n" not in str(current)
        ):
            return current
        # Ray's RayTaskError subclasses the original's class too (isinstance holds), but its text is the whole
        # remote traceback: the original is its `cause`.
        storage = storage_error(current)
        if storage is not None:
            return storage
        for attribute in ("cause", "base_exception", "__cause__", "__context__"):
            inner = getattr(current, attribute, None)
            if isinstance(inner, BaseException):
                queue.append(inner)
        for inner in (
            getattr(current, "exceptions", None) or ()
        ):  # exception groups, Train's per-worker errors
            if isinstance(inner, BaseException):
                queue.append(inner)
    matches = _USER_ERROR_LINE.findall(str(exc))
    if matches:
        kind, message = matches[-1]
        return {"DataError": MmrecError, "ConfigError": ConfigError, "StorageError": StorageError}.get(
            kind, MmrecError
        )(message.strip())
    return None


def one_line(exc: BaseException) -> str:
    """What to print of ``exc`` in a one-line message: the user error it wraps, else its last line (Ray puts the
    original ``Type: message`` last, after the remote traceback)."""
    inner = user_error_in(exc)
    if inner is not None:
        return str(inner)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------------- hints
# How the user gave their settings: as command flags (`mmrec embed --num-gpus 1`) or through a config (`mmrec run
# --set embed.num_gpus=1`, jobs/*.py). A hint must name what the user can type in the command they ran.
_settings_from = {"kind": "flags"}


def settings_from_config() -> None:
    """Called by the pipeline entry points: from here on, hints name ``--set section.key=value``."""
    _settings_from["kind"] = "config"


def hint(config_key: str, value, command_flag: str) -> str:
    """``--set embed.num_gpus=0`` under a config-driven run, else the command's own flag (``--num-gpus 0``)."""
    return f"--set {config_key}={value}" if _settings_from["kind"] == "config" else command_flag
