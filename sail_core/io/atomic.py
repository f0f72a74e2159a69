"""Atomic file and directory writes.

A reader never sees a half-written artifact: everything is written under a temporary name in the
destination directory and renamed into place (``os.replace`` is atomic on POSIX). A finished
artifact is never overwritten silently: callers must pass ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from sail_core.errors import ArtifactExistsError, SailError, disk_full, is_disk_full

_CHUNK = 1 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create private (0600/0700) entries; finished artifacts get the usual permissions,
# so that workers running as other users (a shared run directory) can read them
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise ArtifactExistsError(f"{path} already exists; refusing to overwrite a finished artifact")


@contextlib.contextmanager
def _naming_full_disk(path: Path) -> Iterator[None]:
    """A write that runs out of space says which artifact it was writing (the OS error names no file)."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc) and not isinstance(exc, SailError):
            raise disk_full(path, exc) from exc
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary file path; on success it is renamed to ``path``, on error deleted."""
    path = Path(path)
    _check_target(path, overwrite)
    with _naming_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            yield tmp
            _check_target(path, overwrite)
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` as a whole, on error it is removed."""
    path = Path(path)
    _check_target(path, overwrite)
    with _naming_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
            _check_target(path, overwrite)
            os.chmod(tmp, _DIR_MODE)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, *, overwrite: bool = False) -> Path:
    return write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def sha256_stream(handle: BinaryIO) -> str:
    """SHA-256 of what is left to read in an open binary file (local, or an fsspec file), in chunks."""
    digest = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def sha256_tree(path: str | Path) -> str:
    """Content hash of a file, or of a directory (relative paths and file contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    return tree_digest({f.relative_to(path).as_posix(): sha256_file(f) for f in path.rglob("*") if f.is_file()})


def tree_digest(files: dict[str, str]) -> str:
    """:func:`sha256_tree` of a directory from its files' hashes (relative POSIX path → SHA-256), so a
    directory held elsewhere (a remote store) is checked without its bytes."""
    digest = hashlib.sha256()
    for rel in sorted(files, key=lambda r: r.split("/")):
        digest.update(rel.encode())
        digest.update(b"\0")
        digest.update(files[rel].encode())
    return digest.hexdigest()
