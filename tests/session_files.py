"""Files one pytest session shares between its pytest-xdist workers: a lock, and a Prefect database that a
server of this session has migrated already."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIGRATED_DATABASE = "prefect-migrated.db"


def session_folder(tmp_path_factory) -> Path:
    """A folder every pytest-xdist worker of this session sees (their base folders' parent), or this
    session's own base folder when pytest runs without workers."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def session_lock(tmp_path_factory, name: str) -> Iterator[Path]:
    """Held by one worker of the session at a time; yields the session's folder."""
    import fcntl

    folder = session_folder(tmp_path_factory)
    with open(folder / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish_migrated_database(home: Path, tmp_path_factory) -> None:
    """Keep a copy of the SQLite database of a server that has just become healthy in ``home`` (its
    PREFECT_HOME): migrated, and holding nothing a test made. SQLite's online backup, as the server runs."""
    with session_lock(tmp_path_factory, "prefect-database") as folder:
        if (folder / MIGRATED_DATABASE).exists():
            return
        partial = folder / f"{MIGRATED_DATABASE}.partial"
        with sqlite3.connect(home / "prefect.db") as source, sqlite3.connect(partial) as copy:
            source.backup(copy)
        partial.rename(folder / MIGRATED_DATABASE)


def migrated_prefect_home(home: Path, tmp_path_factory) -> Path:
    """``home`` as a PREFECT_HOME holding the database a server of this session migrated, when one has: a
    server started on it begins serving in about 6 s instead of about 17 s of CPU on two cores (Prefect
    runs every migration on a new database). Without one, ``home`` is left empty and its server migrates."""
    home.mkdir(parents=True, exist_ok=True)
    migrated = session_folder(tmp_path_factory) / MIGRATED_DATABASE
    if migrated.exists():
        shutil.copyfile(migrated, home / "prefect.db")
    return home
