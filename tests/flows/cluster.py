"""A Prefect server, a process work pool and workers as separate processes (each worker may act as its
own host: its own working directory, cache and credentials), for tests and benchmarks of deployments."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited in time (a loaded machine can be slow to shut down)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def stop_worker(proc: subprocess.Popen) -> None:
    """A Prefect worker ignores SIGTERM until its 60 s grace ends; an interrupt (SIGINT, repeated once)
    stops it in seconds."""
    for wait_s in (3, 30):
        if proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
    proc.kill()
    proc.wait(timeout=30)


def cli(env: dict, *args: str, cwd: Path = ROOT, timeout: int = 300) -> str:
    proc = subprocess.run([PREFECT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def start_server(home: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """``prefect server start`` on a free port; returns the process and the environment that talks to it."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    if wait_healthy(port, time.monotonic() + 180, alive=lambda: proc.poll() is None):
        return proc, env
    stop(proc, 30)
    raise TimeoutError((home / "server.log").read_text()[-3000:])


def wait_healthy(port: int, deadline: float, alive=lambda: True) -> bool:
    """Whether the Prefect server on 127.0.0.1:``port`` answers its health check before ``deadline``
    (``time.monotonic()``), asked every 0.25 s while ``alive()`` holds."""
    with httpx.Client(timeout=2) as client:  # one client: each new one builds an SSL context (50 ms of CPU)
        while time.monotonic() < deadline and alive():
            try:
                if client.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
    return False


def code_snapshot(dest: Path) -> Path:
    """A git repository holding this working tree as one commit (tracked and new, unignored files): what
    the deployments' git_clone pull step brings to the workers, uncommitted edits included."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    git = ["git", "-c", "user.name=sail-tests", "-c", "user.email=tests@localhost", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "snapshot"]):
        subprocess.run([*git, *args], cwd=dest, check=True)
    return dest


def start_worker(env: dict, queue: str, name: str, home: Path, extra_env: dict[str, str] | None = None,
                 pool: str = "sail-gpu") -> tuple[subprocess.Popen, object]:
    """A worker as if on its own host: ``home`` is its working directory, HOME and sail cache; the code
    comes from the deployment's pull step, not from this checkout (no PYTHONPATH). A worker creates its
    pool on the server if the pool does not exist yet."""
    home.mkdir(parents=True, exist_ok=True)
    worker_env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    worker_env.update(HOME=str(home), SAIL_CACHE_DIR=str(home / "cache"), **(extra_env or {}))
    handle = open(home / f"worker-{name}.log", "w")
    proc = subprocess.Popen([PREFECT, "worker", "start", "--pool", pool, "--work-queue", queue, "--name", name,
                             "--limit", "1"], env=worker_env, cwd=home, stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    return proc, handle


async def _wait(env: dict, flow_run_id: str, timeout: float):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        async with get_client() as client:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                run = await client.read_flow_run(flow_run_id)
                if run.state is not None and run.state.is_final():
                    children = await client.read_flow_runs()
                    return run, [c for c in children if c.id != run.id]
                await asyncio.sleep(0.5)
    raise TimeoutError(f"flow run {flow_run_id} did not finish in {timeout} s")


def wait(env: dict, flow_run_id: str, timeout: float):
    """The finished flow run and every other flow run the server knows (its subflows and shard runs, and
    those of other tests on the same server: see :func:`shard_runs_of`)."""
    return asyncio.run(_wait(env, flow_run_id, timeout))


def shard_runs_of(runs: list, location: str) -> list:
    """The sail-shard runs that worked on the run at ``location`` (a server shared by several tests holds
    others too; a shard run's parameters name its run's location)."""
    return [r for r in runs if (r.parameters or {}).get("location") == location]


def deployment_run(env: dict, deployment: str, *params: str, job_env: dict[str, str] | None = None) -> str:
    """``prefect deployment run`` with ``-p`` parameters; ``job_env`` adds environment variables to this one
    flow run (``--job-variable env=...``), as a user injects e.g. a fault for a test."""
    args = [a for p in params for a in ("-p", p)]
    if job_env:
        args += ["--job-variable", f"env={json.dumps(job_env)}"]
    out = cli(env, "deployment", "run", deployment, *args)
    return next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)


def parent_flow_run(env: dict, run) -> object:
    """The flow run a flow run was started from (through the task run its parent made for it), or None."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if run.parent_task_run_id is None:
        return None
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as client:
            return client.read_task_run(run.parent_task_run_id).flow_run_id
