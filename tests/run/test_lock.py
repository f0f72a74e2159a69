"""One process per run directory: a second ``sail run`` (here in this process) on a run in use fails at
once, in one line naming the holder; a lock left by a killed process is free (the kernel released it) and
the next run takes it over."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sail_core.run.lock import LOCK_FILE, RunLockedError, run_lock
from tests.cli.in_process import sail

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; from sail_core.run.lock import run_lock\n"
        "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n")


def _holder(run_dir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_sail_run_on_a_run_in_use_fails_in_one_line_naming_the_holder(tmp_path):
    holder = _holder(tmp_path / "runs" / "busy")
    try:
        started = time.monotonic()
        proc = sail("run", "--runs-dir", str(tmp_path / "runs"), "--run-name", "busy")
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"sail run: error: run directory {tmp_path / 'runs' / 'busy'} is in use by "
                               f"pid {holder.pid} on host {socket.gethostname()} since 20")
    assert elapsed < 60  # refused before anything starts (no Prefect server, no stage)


def test_a_lock_whose_process_was_killed_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    holder = _holder(run_dir)
    assert f"pid {holder.pid} on host" in (run_dir / LOCK_FILE).read_text()
    with pytest.raises(RunLockedError, match=f"in use by pid {holder.pid} "):
        with run_lock(run_dir):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_lock(run_dir) as took_over:  # no cleanup needed: the lock died with its process
        assert took_over.startswith(f"pid {holder.pid} on host")
        assert (run_dir / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on host")
        with run_lock(run_dir) as again:  # re-entrant within the process (the CLI, then the flow)
            assert again is None
    assert (run_dir / LOCK_FILE).read_text() == ""  # released: names no holder
