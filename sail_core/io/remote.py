"""Run directories in object storage (``s3://``, ``gs://``, ``memory://``: any fsspec filesystem).

Stages work on a local working copy (safetensors are memory-mapped, step checkpoints are renamed
into place); :class:`RunStore` moves files between it and the remote, one file at a time and only
the files asked for. The remote holds

``objects/<aa>/<sha256>``
    every file's bytes once, named by their SHA-256: a file is uploaded only when the store does
    not hold its content yet, and a download is kept only when its bytes hash to its name;
``tree/<path in the run>``
    a small pointer per run file (``{"sha256": ..., "size": ...}``): which object a path holds.

A pointer is written after its object and a stage's record after its files, each a single atomic
PUT, so a reader never follows a pointer to a missing object. Objects can still be lost or damaged
later (a lifecycle rule, a person, a failed disk): every download is hashed; an object found damaged
is removed from the store and replaced from a good copy this host holds (its verified cache, or the
working copy of the host that wrote it) when there is one (:meth:`RunStore.repair`); a push re-uploads
an object whose stored copy is missing or has the wrong size; where no good copy exists, the stage that
wrote it is recomputed (``sail_core.run.runner``). Downloads go through the host's
:class:`sail_core.io.objects.ObjectCache`, shared by the host's workers. Credentials and endpoints
are fsspec's and the backend's own (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or
``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for S3-compatible servers, or ``~/.aws/``); nothing here
reads, stores or logs them. A local ``location`` needs none of this: the directory *is* the run.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from fsspec.core import url_to_fs

from sail_core.errors import IntegrityError
from sail_core.io.atomic import sha256_file, sha256_stream
from sail_core.io.objects import CorruptObjectError, ObjectCache, cache_root

OBJECTS, TREE = "objects", "tree"

log = logging.getLogger(__name__)


class MissingObjectError(IntegrityError, FileNotFoundError):
    """A pointer of the store names an object the store does not hold (and no host here has it)."""


def is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


@dataclass(frozen=True)
class FileRef:
    """What a run path holds in the store."""

    sha256: str
    size: int


@dataclass
class TransferStats:
    """What one :class:`RunStore` moved (its process's share of the traffic)."""

    files_down: int = 0
    bytes_down: int = 0
    files_up: int = 0
    bytes_up: int = 0
    uploads_skipped: int = 0
    """Files pushed whose content the store already held (nothing sent but a pointer)."""
    objects_repaired: int = 0
    """Missing or damaged objects of the store replaced from a good copy on this host."""
    bytes_not_sent: int = 0
    from_host_cache: int = 0
    """Files pulled that another worker of the host had already downloaded (no transfer)."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RunStore:
    def __init__(self, location: str, local: str | Path | None = None, workspace: str = "main") -> None:
        """``local``: the working copy of a remote run (default ``<cache>/runs/<hash of the URL>/<workspace>``,
        the cache being ``$SAIL_CACHE_DIR`` or ``~/.cache/sail``); each process that works on a run at
        the same time needs its own ``workspace``."""
        self.location = location
        self.stats = TransferStats()
        if is_url(location):
            # endpoints and credentials come from the environment when a filesystem is made: fsspec's
            # instance cache would hand back one made under an earlier environment (another endpoint)
            self.fs, root = url_to_fs(location, skip_instance_cache=True)
            self.remote_root = root.rstrip("/")
            digest = hashlib.sha256(location.encode()).hexdigest()[:16]
            self.local = Path(local) if local else cache_root() / "runs" / digest / workspace
            self.cache = ObjectCache(cache_root() / "objects")
        else:
            self.fs, self.remote_root = None, ""
            self.local = Path(location.removeprefix("file://"))
        self.local.mkdir(parents=True, exist_ok=True)

    @property
    def remote(self) -> bool:
        return self.fs is not None

    # ---- addresses -------------------------------------------------------------------------------

    def _object(self, sha256: str) -> str:
        return f"{self.remote_root}/{OBJECTS}/{sha256[:2]}/{sha256}"

    def _pointer(self, rel: str) -> str:
        return f"{self.remote_root}/{TREE}/{rel}".rstrip("/")

    def rel(self, path: str | Path) -> str:
        """A path of the run (absolute under the working copy, or already relative) as stored."""
        path = Path(path)
        if path.is_absolute():
            path = path.resolve().relative_to(self.local.resolve())
        rel = path.as_posix().strip("/")
        return "" if rel == "." else rel  # the run's root: Path("") and the working copy itself are "."

    # ---- what the remote holds ------------------------------------------------------------------

    def listing(self, rel: str = "") -> dict[str, FileRef]:
        """Every file the store holds at ``rel`` (a file, or everything under a directory), by run path."""
        if self.fs is None:
            return {}
        base = self._pointer(rel)
        tree = f"{self.remote_root}/{TREE}/"
        self.fs.invalidate_cache()  # other processes and hosts write the store: never trust a cached listing
        pointers = [p for p in self.fs.find(base) if p == base or p.startswith(base + "/")]
        if not pointers:
            return {}
        contents = self.fs.cat(pointers)
        return {p[len(tree):]: FileRef(**json.loads(contents[p])) for p in pointers}

    def records(self) -> list[str]:
        """Run paths of every stage record the store holds (``<group>/<stage>-<key>.json``)."""
        if self.fs is None:
            return []
        tree = f"{self.remote_root}/{TREE}"
        self.fs.invalidate_cache()
        rels = [p[len(tree) + 1:] for p in self.fs.find(tree, maxdepth=2)]
        return sorted(r for r in rels if fnmatch.fnmatch(r, "*/*-*.json") and not r.startswith("."))

    def read_bytes(self, rel: str) -> bytes | None:
        """A small file of the run straight from the store (e.g. a stage's record), or None. A missing or
        damaged object is repaired from a good copy on this host, else an :class:`IntegrityError`."""
        found = self.listing(rel).get(rel)
        if found is None:
            return None
        try:
            data = self.fs.cat_file(self._object(found.sha256))
        except FileNotFoundError:
            data = None
        if data is None or hashlib.sha256(data).hexdigest() != found.sha256:
            problem = "missing" if data is None else "damaged"
            if data is not None:
                self.remove_object(found.sha256)
            source = self.repair(rel, found)
            if source is None:
                raise IntegrityError(f"{self.location}/{rel}: its object {self.object_url(found.sha256)} is {problem}"
                                     " and this host holds no good copy")
            data = source.read_bytes()
        self.stats.files_down += 1
        self.stats.bytes_down += len(data)
        return data

    # ---- integrity --------------------------------------------------------------------------------

    def object_url(self, sha256: str) -> str:
        """Where the store keeps an object (for messages: which object is missing or damaged)."""
        return f"{self.fs.unstrip_protocol(self._object(sha256))}" if self.fs is not None else sha256

    def stored_problem(self, ref: FileRef, content: bool = False) -> str | None:
        """What is wrong with the store's copy of an object: missing, the wrong size, or (``content``:
        downloaded and hashed) bytes that are not its name's; None when it is intact."""
        target = self._object(ref.sha256)
        self.fs.invalidate_cache(target)
        try:
            size = self.fs.info(target).get("size")
        except FileNotFoundError:
            return "missing"
        if size != ref.size:
            return f"{size} bytes instead of {ref.size}"
        if content:
            with self.fs.open(target, "rb") as handle:
                digest = sha256_stream(handle)
            self.stats.bytes_down += ref.size
            if digest != ref.sha256:
                return "damaged: its bytes do not hash to its name"
        return None

    def good_copy(self, rel: str, ref: FileRef) -> Path | None:
        """A file on this host with the object's bytes, hashed now: the host cache's, else the working
        copy's (the host that wrote a stage keeps its files there)."""
        if self.cache.verified(ref.sha256):
            return self.cache.path(ref.sha256)
        local = self.local / rel
        if local.is_file() and sha256_file(local) == ref.sha256:
            return local
        return None

    def repair(self, rel: str, ref: FileRef) -> Path | None:
        """Upload a good copy of ``rel``'s object from this host over a missing or damaged one; returns
        the good copy, or None when this host holds none."""
        if self.fs is None:
            return None
        source = self.good_copy(rel, ref)
        if source is None:
            return None
        self._upload(source, ref.sha256)
        self.cache.adopt(source, ref.sha256)
        self.stats.objects_repaired += 1
        log.warning("store: replaced the missing or damaged object of %s/%s from %s", self.location, rel, source)
        return source

    def remove_object(self, sha256: str) -> None:
        """Take a damaged object out of the store, so that no host downloads it again and the next push
        of the content (or a repair) uploads it afresh."""
        try:
            self.fs.rm(self._object(sha256))
        except FileNotFoundError:
            pass

    # ---- transfers ------------------------------------------------------------------------------

    def pull(self, paths: Iterable[str | Path]) -> int:
        """Bring run paths (files, or directories with everything under them) into the working copy as
        the store holds them; paths the store lacks are skipped. Returns how many files were fetched
        (downloaded, or linked from the host's cache). A missing or damaged object is repaired from a
        good copy on this host; without one, an :class:`IntegrityError` naming the file."""
        if self.fs is None:
            return 0
        wanted: dict[str, FileRef] = {}
        for path in paths:
            wanted.update(self.listing(self.rel(path)))
        fetched = 0
        for rel, ref in sorted(wanted.items()):
            dest = self.local / rel
            if self.cache.holds(ref.sha256, dest):
                continue
            try:
                downloaded = self.cache.fetch(ref.sha256, lambda tmp, sha=ref.sha256: self.fs.get_file(
                    self._object(sha), str(tmp)), name=f"{self.location}/{rel}")
            except (CorruptObjectError, FileNotFoundError) as exc:
                self._recover(rel, ref, exc)
                downloaded = False
            if downloaded:
                self.stats.files_down += 1
                self.stats.bytes_down += ref.size
            else:
                self.stats.from_host_cache += 1
            self.cache.materialize(ref.sha256, dest)
            fetched += 1
        return fetched

    def _recover(self, rel: str, ref: FileRef, exc: Exception) -> None:
        """After a download found ``rel``'s object damaged or missing: take a damaged one out of the store
        and repair it from this host, else raise naming the file and the object."""
        damaged = isinstance(exc, CorruptObjectError)
        if damaged:
            self.remove_object(ref.sha256)
        if self.repair(rel, ref) is not None:
            return
        what = "damaged" if damaged else "missing"
        error = CorruptObjectError if damaged else MissingObjectError
        detail = f" (its bytes do not hash to the expected {ref.sha256}; taken out of it)" if damaged else ""
        raise error(f"{self.location}/{rel}: its object {self.object_url(ref.sha256)} is {what} in the store"
                    f"{detail} and this host holds no good copy; rerun: the stage "
                    f"that wrote it is recomputed, unless a host holding the file repairs it first "
                    f"(`sail verify {self.location} --repair` there)") from exc

    def pull_all(self) -> int:
        return self.pull([""])

    def push(self, paths: Iterable[str | Path]) -> int:
        """Upload local run files (or every file under directories): content the store does not hold
        yet, then each file's pointer. Returns how many files were pushed."""
        if self.fs is None:
            return 0
        files: list[Path] = []
        for path in paths:
            path = Path(path)
            path = path if path.is_absolute() else self.local / path
            if path.is_file():
                files.append(path)
            elif path.is_dir():
                files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        for file in files:
            self._push_file(file)
        return len(files)

    def _push_file(self, file: Path) -> None:
        rel = self.rel(file)
        sha256, size = sha256_file(file), file.stat().st_size
        problem = self.stored_problem(FileRef(sha256, size))
        if problem is None:
            self.stats.uploads_skipped += 1
            self.stats.bytes_not_sent += size
        else:
            if problem != "missing":
                log.warning("store: the stored object of %s/%s had %s; uploaded again", self.location, rel, problem)
            self._upload(file, sha256)
            self.stats.files_up += 1
            self.stats.bytes_up += size
        pointer = self._pointer(rel)
        self.fs.makedirs(pointer.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(pointer, json.dumps({"sha256": sha256, "size": size}).encode())
        self.cache.adopt(file, sha256)

    def _upload(self, file: Path, sha256: str) -> None:
        target = self._object(sha256)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        self.fs.put_file(str(file), target)

    def mirror(self, directory: str | Path) -> int:
        """Make the store's copy of a local directory exactly the local one: push its files, then drop
        the store's pointers to files it no longer has (e.g. step checkpoints of a finished training)."""
        if self.fs is None:
            return 0
        directory = Path(directory) if Path(directory).is_absolute() else self.local / directory
        pushed = self.push([directory])
        local = {self.rel(p) for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")}
        self.forget([rel for rel in self.listing(self.rel(directory)) if rel not in local])
        return pushed

    def forget(self, rels: Iterable[str]) -> None:
        """Remove pointers (the objects stay: another path may hold the same content)."""
        pointers = [self._pointer(rel) for rel in rels]
        if self.fs is not None and pointers:
            self.fs.rm(pointers)

    def move(self, moves: dict[str, str]) -> None:
        """Give files new run paths (pointers only: the objects do not move)."""
        if self.fs is None or not moves:
            return
        contents = self.fs.cat([self._pointer(src) for src in moves])
        for src, dst in moves.items():
            pointer = self._pointer(dst)
            self.fs.makedirs(pointer.rsplit("/", 1)[0], exist_ok=True)
            self.fs.pipe_file(pointer, contents[self._pointer(src)])
        self.forget(moves)


def transfer_log(stats: TransferStats, **fields: object) -> Path:
    """Append one line of what a process moved to ``<cache>/transfers.jsonl`` (the host's traffic record)."""
    path = cache_root() / "transfers.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps({**fields, **stats.as_dict(), "pid": os.getpid()}) + "\n")
    return path
