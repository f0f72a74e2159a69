"""A production server: `deployments/start-server.sh` on PostgreSQL (``SAIL_DATABASE_URL``), the deployments
of prefect.yaml on it, and a world deployment run through a process worker, its flow runs stored in the
database. Runs where a PostgreSQL server can be started (Debian's ``postgresql`` package)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .cluster import ROOT, cli, deployment_run, free_port, start_worker, stop_worker, wait
from .conftest import TINY_WORLD
from .helpers import task_states

pytestmark = [pytest.mark.flows, pytest.mark.skipif(
    shutil.which("initdb") is None or (os.geteuid() == 0 and shutil.which("runuser") is None),
    reason="PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")]


def _as_postgres(*args: str) -> list[str]:
    """PostgreSQL refuses to run as root: as root, its commands run as the postgres user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@pytest.fixture()
def postgres() -> str:
    # a directory of its own under the system's temporary folder: pytest's are private to this user, and
    # as root the database server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="sail-postgres-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    port = free_port()
    subprocess.run(_as_postgres("initdb", "-D", str(data), "--auth=trust", "-U", "prefect"), check=True,
                   capture_output=True, cwd=root)
    subprocess.run(_as_postgres("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-o",
                                f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"),
                   check=True, capture_output=True)
    try:
        subprocess.run(["createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "prefect", "prefect"], check=True)
        yield f"postgresql+asyncpg://prefect@127.0.0.1:{port}/prefect"
    finally:
        subprocess.run(_as_postgres("pg_ctl", "-D", str(data), "-m", "fast", "stop"), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _rows(url: str, table: str) -> int:
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    host, port = host_port.split(":")
    out = subprocess.run(["psql", "-h", host, "-p", port, "-U", "prefect", "-d", "prefect", "-tAc",
                          f"select count(*) from {table}"], check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def test_the_world_deployment_runs_on_a_server_backed_by_postgresql(postgres, cluster, golden_files, tmp_path):
    home = tmp_path / "prefect-home"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin", PREFECT_HOME=str(home),
               SAIL_DATABASE_URL=postgres, SAIL_SERVER_PORT=str(port))
    started = subprocess.run(["bash", str(ROOT / "deployments" / "start-server.sh")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=240)
    assert started.returncode == 0, (started.stderr, (tmp_path / "logs" / "prefect-server.log").read_text()[-3000:])
    server_pid = int(started.stdout.split("pid ", 1)[1].split()[0])
    api = {**{k: v for k, v in env.items() if k != "SAIL_DATABASE_URL"}, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
           "PREFECT_WORKER_QUERY_SECONDS": "1"}
    worker = None
    try:
        cli(api, "work-pool", "create", "sail-gpu", "--type", "process")
        assert "sail-loop/world" in cli(api, "--no-prompt", "deploy", "--name", "world", cwd=cluster.code)
        worker = start_worker(api, "control", "pg-control", tmp_path / "worker")
        golden_files.copy(cluster.code / "runs", "on-postgres")  # a finished run: every stage Cached
        flow_run_id = deployment_run(api, "sail-loop/world", "run_name=on-postgres",
                                     f"overrides={json.dumps(TINY_WORLD)}")
        run, _ = wait(api, flow_run_id, timeout=600)
        assert run.state.is_completed(), run.state.message
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: api["PREFECT_API_URL"]}):
            assert set(task_states(flow_run_id).values()) == {"Cached"}
        # the server kept everything in PostgreSQL: its flow runs and task runs there, no SQLite file
        assert _rows(postgres, "flow_run") >= 2 and _rows(postgres, "task_run") >= 10
        assert not (home / "prefect.db").exists()
    finally:
        if worker is not None:
            stop_worker(worker[0])
            worker[1].close()
        os.kill(server_pid, 15)
