"""Errors that name what was wrong and where, so a user can fix the input without a debugger."""

from __future__ import annotations

import errno
import os
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


class DiskFullError(SailError, OSError):
    """No space (or quota) left on the file system an artifact was being written to; names the artifact."""


class IntegrityError(SailError, OSError):
    """Bytes that are not the ones recorded for them (a damaged or changed file or stored object)."""


_FULL = (errno.ENOSPC, errno.EDQUOT)
_DETERMINISTIC_ERRNOS = (*_FULL, errno.EROFS, errno.ENOENT, errno.EACCES, errno.EISDIR, errno.ENOTDIR)


def is_disk_full(exc: BaseException) -> bool:
    """Out of space or quota, also where a library reports it as text (safetensors' Rust I/O errors)."""
    if isinstance(exc, OSError) and exc.errno in _FULL:
        return True
    text = str(exc)
    return any(os.strerror(code) in text for code in _FULL) or "StorageFull" in text


def disk_full(path: str | Path, exc: BaseException) -> DiskFullError:
    """The error of a write of ``path`` that ran out of space: the path and what to do, one line."""
    return DiskFullError(f"{path}: no space left on its file system while writing it ({' '.join(str(exc).split())}"
                         "); free space (or move the run) and rerun: finished stages are kept")


def is_deterministic(exc: BaseException) -> bool:
    """A retry would fail the same way: an error raised on purpose (bad input, damaged bytes, a diverged
    loss), a missing file or object, no permission, or no space left. Retrying those only loses time."""
    if isinstance(exc, SailError):
        return True
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return True
    return (isinstance(exc, OSError) and exc.errno in _DETERMINISTIC_ERRNOS) or is_disk_full(exc)
