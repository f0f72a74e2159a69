"""Where a deployment run works: a directory that outlives the flow run, not the worker's clone.

A Prefect process worker runs each flow run in a fresh temporary directory, into which the
deployment's pull step clones the code, and deletes it when the run ends. A run directory written
there (the default ``runs_dir="runs"`` is relative) would be lost with it, and nothing would resume.
So a deployment's flow run first moves into its working directory, where relative ``runs_dir`` and
data paths (``data/pickapic_v2/train-*.parquet``) mean what they mean to ``sail run`` started there:

1. ``SAIL_WORKDIR``, when the worker's host sets it (per worker: each host may keep runs elsewhere);
2. else ``SAIL_DEPLOYED_FROM``, which ``prefect.yaml`` sets on every deployment to the checkout that
   ``prefect deploy`` ran in (or to ``SAIL_WORKDIR`` as it was at deploy time);
3. else the flow run's own directory, and then the preflight refuses a run directory inside a
   temporary clone, in one line (:func:`temporary_clone_problem`).

A killed worker leaves its temporary clone behind (its cleanup never runs). Each flow run marks its
clone with its process id and start time (:func:`mark_clone`), and every deployment flow run removes
the marked clones of processes that no longer exist (:func:`sweep_dead_clones`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from sail_core.errors import InputError
from sail_core.io.remote import is_url

WORKDIR_ENV = "SAIL_WORKDIR"
DEPLOYED_FROM_ENV = "SAIL_DEPLOYED_FROM"
CLONE_MARK = ".sail-flow-run.json"
CLONE_SUFFIX = "prefect"
"""The process worker's temporary directories end in ``prefect`` (``TemporaryDirectory(suffix="prefect")``)."""


def deployment_workdir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The directory a deployment's flow run works in (``SAIL_WORKDIR``, else ``SAIL_DEPLOYED_FROM``), if set.
    Raises a one-line :class:`InputError` when it is not an existing absolute directory on this host."""
    environ = os.environ if environ is None else environ
    for name in (WORKDIR_ENV, DEPLOYED_FROM_ENV):
        value = environ.get(name, "").strip()
        if not value:
            continue
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise InputError(f"{value!r} is not an absolute path: set {name} to the directory that holds "
                             "this host's runs and data", parameter=name)
        if not path.is_dir():
            raise InputError(f"{path} is not a directory on this host: create it, or set {WORKDIR_ENV} on this "
                             "host's worker to the directory that holds its runs and data", parameter=name)
        return path
    return None


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def temporary_clone(cwd: Path | None = None, temp_root: Path | None = None) -> Path | None:
    """The worker's temporary directory that ``cwd`` is in (a directory of the system's temporary folder
    whose name ends in ``prefect``), or None."""
    cwd = (cwd or Path.cwd()).resolve()
    temp_root = (temp_root or Path(tempfile.gettempdir())).resolve()
    for folder in (cwd, *cwd.parents):
        if folder.parent == temp_root:
            return folder if folder.name.endswith(CLONE_SUFFIX) else None
    return None


def temporary_clone_problem(location: str, cwd: Path | None = None, temp_root: Path | None = None) -> str | None:
    """One line when the run directory ``location`` would be inside the flow run's temporary clone."""
    if is_url(location):
        return None
    clone = temporary_clone(cwd, temp_root)
    path = Path(location.removeprefix("file://")).expanduser()
    path = (path if path.is_absolute() else (cwd or Path.cwd()) / path).resolve()
    if clone is None or not _inside(path, clone):
        return None
    return (f"runs_dir: the run directory {path} is inside this flow run's temporary directory {clone}, which the "
            f"worker deletes when the run ends (nothing would resume): set {WORKDIR_ENV} on the worker, or "
            "redeploy with prefect.yaml (it sets SAIL_DEPLOYED_FROM), or pass an absolute runs_dir or an s3:// URL")


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): a pid the kernel
    gave to a new process has another. None when no such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, started: str | None) -> bool:
    if Path("/proc").is_dir():
        now = _process_start(pid)
        return now is not None and (started is None or now == started)
    try:  # no /proc (macOS): a pid in use is taken as alive
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_clone(clone: Path) -> None:
    """Record this process as the user of the worker's temporary directory ``clone``."""
    pid = os.getpid()
    (clone / CLONE_MARK).write_text(json.dumps({"pid": pid, "started": _process_start(pid)}))


def sweep_dead_clones(temp_root: Path | None = None) -> list[Path]:
    """Remove the worker temporary directories marked by flow runs whose process is gone; returns them.
    Unmarked directories are left alone (another program's, or a run that has not started)."""
    temp_root = temp_root or Path(tempfile.gettempdir())
    removed = []
    for folder in temp_root.glob(f"*{CLONE_SUFFIX}"):
        try:
            mark = json.loads((folder / CLONE_MARK).read_text())
        except (OSError, ValueError):
            continue
        if not _alive(int(mark["pid"]), mark.get("started")):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


__all__ = ["DEPLOYED_FROM_ENV", "WORKDIR_ENV", "deployment_workdir", "mark_clone", "sweep_dead_clones",
           "temporary_clone", "temporary_clone_problem"]
