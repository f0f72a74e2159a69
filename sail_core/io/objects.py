"""A host's cache of run files, addressed by the SHA-256 of their content.

Every worker process of a host shares one :class:`ObjectCache` (``<cache dir>/objects``). An object
is downloaded once per host, under a per-object lock, into a temporary file that is hashed and
renamed into place only when its hash is the name it is stored under: concurrent pulls of one
checkpoint never write the same path, and a reader never sees a partial or corrupt object. Working
copies of a run get hard links to objects (a copy where the file system refuses links), so eight
workers of a host reading one checkpoint hold it on disk once. Objects are read-only: the project
writes files by atomic rename, never in place, so a linked working-copy file cannot change one.

Something else can (a disk error, a person, a tool that ignores the mode), so an object is re-hashed
before it is used (:meth:`ObjectCache.verified`; once per process while its size, time and inode
stay the same): a damaged one is dropped and fetched again, never handed to a stage.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from sail_core.errors import IntegrityError
from sail_core.io.atomic import sha256_file

log = logging.getLogger(__name__)


class CorruptObjectError(IntegrityError):
    """Downloaded bytes whose hash is not the one they were stored under."""


_VERIFIED: dict[Path, tuple[int, int, int]] = {}
"""Objects this process hashed, with the (inode, size, mtime) they had then: hashed again if any changed."""


def _signature(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_ino, info.st_size, info.st_mtime_ns


def cache_root() -> Path:
    """``$SAIL_CACHE_DIR``, else ``$XDG_CACHE_HOME/sail``, else ``~/.cache/sail``."""
    if os.environ.get("SAIL_CACHE_DIR"):
        return Path(os.environ["SAIL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "sail"


class ObjectCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def verified(self, sha256: str) -> bool:
        """The host holds the object and its bytes still hash to its name. A damaged copy is dropped
        (logged) so that the caller fetches it again: a cache is never trusted without its hash."""
        path = self.path(sha256)
        try:
            signature = _signature(path)
        except FileNotFoundError:
            return False
        if _VERIFIED.get(path) == signature:
            return True
        if sha256_file(path) == sha256:
            _VERIFIED[path] = signature
            return True
        self._drop(path, signature)
        return False

    @staticmethod
    def _drop(path: Path, signature: tuple[int, int, int]) -> None:
        """Remove a damaged object (working copies linked to it keep their bytes until replaced), unless
        another worker of the host has replaced it since it was hashed."""
        _VERIFIED.pop(path, None)
        try:
            if _signature(path) == signature:
                path.unlink()
                log.warning("host cache: dropped %s (its bytes no longer hash to its name); it is fetched again",
                            path)
        except FileNotFoundError:
            pass

    @contextlib.contextmanager
    def _locked(self, sha256: str) -> Iterator[None]:
        lock = self.path(sha256).with_suffix(".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def fetch(self, sha256: str, download: Callable[[Path], None], name: str = "") -> bool:
        """Make sure the object is here: ``download(tmp)`` writes its bytes, which must hash to
        ``sha256``. Returns True when this call downloaded it (False: another process of the host had)."""
        if self.verified(sha256):
            return False
        with self._locked(sha256):
            if self.verified(sha256):  # another worker of this host fetched it while we waited
                return False
            target = self.path(sha256)
            fd, tmp_name = tempfile.mkstemp(prefix=f".{sha256}.", suffix=".tmp", dir=target.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                download(tmp)
                got = sha256_file(tmp)
                if got != sha256:
                    raise CorruptObjectError(f"{name or sha256}: downloaded bytes hash to {got}, expected {sha256}; "
                                             "nothing was kept (the store's object is damaged)")
                os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
                os.replace(tmp, target)
                _VERIFIED[target] = _signature(target)
            finally:
                tmp.unlink(missing_ok=True)
        return True

    def adopt(self, file: Path, sha256: str) -> None:
        """Take a finished local file (whose hash is ``sha256``) into the cache, so other workers of the
        host reuse it instead of downloading it."""
        if self.verified(sha256):
            return
        with self._locked(sha256):
            if self.verified(sha256):
                return
            target = self.path(sha256)
            tmp = target.with_name(f".{sha256}.{os.getpid()}.adopt")
            try:
                os.link(file, tmp)
            except OSError:
                shutil.copyfile(file, tmp)
            os.chmod(tmp, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(tmp, target)

    def holds(self, sha256: str, dest: Path) -> bool:
        """``dest`` is this object (the same file), and the object is intact (:meth:`verified`)."""
        try:
            same = dest.exists() and os.path.samefile(dest, self.path(sha256))
        except FileNotFoundError:
            return False
        return same and self.verified(sha256)

    def materialize(self, sha256: str, dest: Path) -> None:
        """Put the object at ``dest`` (a hard link, else a copy), atomically replacing what is there."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.link(self.path(sha256), tmp)
        except OSError:
            shutil.copyfile(self.path(sha256), tmp)
        os.replace(tmp, dest)
