"""User-facing errors: one clear line naming the file, row and column (or the flag), turned into exit code 2 by the
CLI. ``storage_error`` gives the same treatment to the OS errors a user can fix: a full disk, a quota, read-only
storage, missing permissions."""

from __future__ import annotations

import errno


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
_ELSEWHERE = "or pass another --storage/--out"
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
