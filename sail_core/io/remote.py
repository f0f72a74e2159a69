"""Run directories on any fsspec filesystem (``s3://``, ``gs://``, ``memory://``...).

Stages work on a local directory (safetensors are memory-mapped, step checkpoints are renamed
into place). A remote run is mirrored: :meth:`RunStore.pull` brings down what the remote has and
the local copy lacks, and :meth:`RunStore.push` uploads a finished stage. Local paths need none of
this: the local directory *is* the run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fsspec.core import url_to_fs


def is_url(location: str) -> bool:
    return "://" in location and not location.startswith("file://")


class RunStore:
    def __init__(self, location: str, local: str | Path | None = None) -> None:
        """``local``: the working copy of a remote run (default ``~/.cache/sail/runs/<hash of the URL>``)."""
        self.location = location
        if is_url(location):
            self.fs, self.remote_root = url_to_fs(location)
            digest = hashlib.sha256(location.encode()).hexdigest()[:16]
            self.local = Path(local) if local else Path.home() / ".cache" / "sail" / "runs" / digest
        else:
            self.fs, self.remote_root = None, ""
            self.local = Path(location.removeprefix("file://"))
        self.local.mkdir(parents=True, exist_ok=True)

    @property
    def remote(self) -> bool:
        return self.fs is not None

    def pull(self) -> int:
        """Download remote files missing locally (or of another size); return how many."""
        if self.fs is None or not self.fs.exists(self.remote_root):
            return 0
        count = 0
        for remote_file, info in self.fs.find(self.remote_root, detail=True).items():
            rel = remote_file[len(self.remote_root.rstrip("/")) + 1 :]
            local = self.local / rel
            if not local.exists() or local.stat().st_size != info.get("size"):
                local.parent.mkdir(parents=True, exist_ok=True)
                self.fs.get_file(remote_file, str(local))
                count += 1
        return count

    def push(self, path: str | Path) -> int:
        """Upload a local file or directory of the run (absolute, or relative to the run); return files sent."""
        if self.fs is None:
            return 0
        path = Path(path)
        path = path if path.is_absolute() else self.local / path
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            rel = file.relative_to(self.local).as_posix()
            target = f"{self.remote_root.rstrip('/')}/{rel}"
            self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
            self.fs.put_file(str(file), target)
        return len(files)

