"""One process at a time per run directory.

``<run>/.lock`` holds one line naming its holder (pid, host, start time) while a ``sail-loop`` flow
works in the run. The lock itself is the kernel's ``flock`` on that file, not the file's existence:
the kernel releases it when the holder exits, however it exits (``kill -9`` and the OOM killer
included), so a lock left by a dead process is simply free and the next run takes it over, with
nothing to clean up and no window in which two processes both believe they hold it. The line is
only there to say who holds it. Within one process the lock is re-entrant (the CLI takes it before
starting Prefect, the flow takes it again). ``flock`` is per host except on file systems that
forward it (NFSv4 does).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from sail_core.errors import SailError

LOCK_FILE = ".lock"
_held: dict[str, int] = {}
"""Lock files this process holds (real path → depth), for re-entrance."""


class RunLockedError(SailError):
    """The run directory is in use by another process."""


def _holder_line() -> str:
    started = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return f"pid {os.getpid()} on host {socket.gethostname()} since {started}\n"


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[str | None]:
    """Hold ``run_dir``'s lock; yields the line of the earlier holder whose lock this took over (a
    process that died holding it), or None. Raises :class:`RunLockedError` naming the holder when a
    live process has it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    real = os.path.realpath(path)
    if real in _held:
        _held[real] += 1
        try:
            yield None
        finally:
            _held[real] -= 1
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
            raise RunLockedError(f"run directory {run_dir} is in use by {holder}; wait for that run to end "
                                 f"or stop it (a lock whose process died is taken over automatically)") from None
        earlier = os.pread(fd, 4096, 0).decode(errors="replace").strip() or None
        line = _holder_line().encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, line, 0)
        os.fsync(fd)
        _held[real] = 1
        try:
            yield earlier
        finally:
            del _held[real]
            os.ftruncate(fd, 0)  # released: an empty file names no holder
    finally:
        os.close(fd)  # closing the descriptor releases the flock
