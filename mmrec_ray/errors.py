"""User-facing errors: one clear line naming the file, row and column, turned into exit code 2 by the CLI."""

from __future__ import annotations


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
