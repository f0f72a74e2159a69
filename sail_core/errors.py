"""Errors that name what was wrong and where, so a user can fix the input without a debugger."""

from __future__ import annotations

from pathlib import Path


class SailError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(SailError, ValueError):
    """Bad user input: a file, a row, a column or a parameter that cannot be used.

    The message always says which file/row/column/parameter, so that a failed pipeline run can be
    repaired by editing the input and rerunning (finished artifacts are kept).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        row: int | None = None,
        column: str | None = None,
        parameter: str | None = None,
    ) -> None:
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.parameter = parameter
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        if parameter is not None:
            where.append(f"parameter {parameter!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class ArtifactExistsError(SailError, FileExistsError):
    """Refusing to overwrite a finished artifact (delete it explicitly to recompute it)."""


class TrainingDivergedError(SailError, FloatingPointError):
    """Training diverged (``sail_core.training.divergence``); the newest trusted checkpoint is kept."""


class NonFiniteLossError(TrainingDivergedError):
    """Training produced a NaN or infinite loss; the newest trusted checkpoint is kept on disk."""
