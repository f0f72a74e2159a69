"""Integration: a real `prefect server`, a process work pool, deployments from prefect.yaml, workers,
and `prefect deployment run` from the command line, as a user would do it."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import TINY_WORLD

pytestmark = pytest.mark.flows
ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if it has not exited in time (a loaded machine can be slow to shut down)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def _cli(env: dict, *args: str, timeout: int = 300) -> str:
    proc = subprocess.run([PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("server-home")
    port = _free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_WORKER_QUERY_SECONDS": "2",
           "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (home / "server.log").read_text()[-3000:]
            time.sleep(1)
        else:
            raise TimeoutError((home / "server.log").read_text()[-3000:])
        yield env
    finally:
        _stop(proc, 60)
        log.close()


@pytest.fixture(scope="module")
def deployed(server, tmp_path_factory):
    logs = tmp_path_factory.mktemp("workers")
    _cli(server, "work-pool", "create", "sail-gpu", "--type", "process")
    out = _cli(server, "--no-prompt", "deploy", "--all")
    for name in ("sail-loop/sdxl", "sail-loop/sd15", "sail-loop/world", "sail-shard/gpu"):
        assert name in out, out
    workers = []
    for queue, name in (("control", "control"), ("gpu", "gpu0")):
        handle = open(logs / f"{name}.log", "w")
        workers.append((subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "sail-gpu", "--work-queue", queue, "--name", name, "--limit", "1"],
            env=server, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True), handle))
    try:
        yield server
    finally:
        for proc, handle in workers:
            _stop(proc, 60)
            handle.close()


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
                await asyncio.sleep(2)
    raise TimeoutError(f"flow run {flow_run_id} did not finish in {timeout} s")


def _deployment_run(env: dict, runs_dir: Path, run_name: str, overrides: dict) -> str:
    out = _cli(env, "deployment", "run", "sail-loop/world", "-p", f"run_name={run_name}",
               "-p", f"runs_dir={runs_dir}", "-p", f"overrides={json.dumps(overrides)}")
    return next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)


def test_world_deployment_runs_on_a_process_pool_worker(deployed, tmp_path):
    flow_run_id = _deployment_run(deployed, tmp_path, "ci", TINY_WORLD)
    run, _ = asyncio.run(_wait(deployed, flow_run_id, timeout=900))
    assert run.state.is_completed(), run.state.message
    assert (tmp_path / "ci" / "report" / "metrics.parquet").stat().st_size > 0
    assert (tmp_path / "ci" / "manifest.json").exists()


def test_generation_and_ranking_shard_across_gpu_queue_workers(deployed, tmp_path):
    flow_run_id = _deployment_run(deployed, tmp_path, "fanout", {**TINY_WORLD, "runtime.shard_workers": 2})
    run, others = asyncio.run(_wait(deployed, flow_run_id, timeout=900))
    assert run.state.is_completed(), run.state.message
    shard_runs = [r for r in others if r.name.startswith(("generate-round-01", "rank-round-01"))]
    assert sorted(r.name for r in shard_runs) == ["generate-round-01-part-0", "generate-round-01-part-1",
                                                  "rank-round-01-part-0", "rank-round-01-part-1"]
    assert all(r.state.is_completed() for r in shard_runs)
    generate_dir = next((tmp_path / "fanout" / "round-01").glob("generate-*/"))
    assert len(list(generate_dir.glob("shard-*.parquet"))) == 4
