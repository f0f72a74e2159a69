"""Integration: a real `prefect server`, a process work pool, deployments from prefect.yaml (their pull
step clones the deployed commit into each worker's directory), workers, and `prefect deployment run`
from the command line, as a user would do it; the worker scripts of deployments/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from sail_core.run.workdir import CLONE_MARK

from .cluster import ROOT, cli, deployment_run, parent_flow_run, shard_runs_of, start_worker, stop_worker, wait
from .conftest import TINY_WORLD
from .helpers import flow_logs, same_artifacts, task_states

pytestmark = pytest.mark.flows


def _world_run(env: dict, runs_dir: Path, run_name: str, overrides: dict) -> str:
    return deployment_run(env, "sail-loop/world", f"run_name={run_name}", f"runs_dir={runs_dir}",
                          f"overrides={json.dumps(overrides)}")


@pytest.mark.real_arch
def test_sd15_deployment_runs_the_real_architecture_from_a_random_weight_folder(cluster, real_arch_models,
                                                                                real_arch_data, tmp_path):
    """`prefect deployment run sail-loop/sd15` with the data and the model passed as parameters. The
    parameter `overrides` replaces the deployment's own (8 shard workers, 8 training processes): it says
    what this machine has."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from .real_arch import LargestDescendantRssSampler, RunCost, overrides, report_cost, stage_costs

    deployed = cluster.env
    cluster.start_worker("control")
    values = overrides("sd15", real_arch_models, real_arch_data)
    started = time.time()
    with LargestDescendantRssSampler(os.getpid()) as sampler:  # the workers are this process's children
        flow_run_id = deployment_run(deployed, "sail-loop/sd15", "run_name=sd15-random", f"runs_dir={tmp_path}",
                                     f"overrides={json.dumps(values)}")
        run, _ = wait(deployed, flow_run_id, timeout=3600)
    assert run.state.is_completed(), run.state.message
    with temporary_settings({PREFECT_API_URL: deployed["PREFECT_API_URL"]}):
        stages = stage_costs(flow_run_id, sampler)
    report_cost(RunCost("sd15-deployment", time.time() - started, sampler.peak(started, time.time()), stages))
    assert run.parameters["preset"] == "sd15" and run.parameters["overrides"] == values
    config = json.loads((tmp_path / "sd15-random" / "report" / "config.json").read_text())
    assert config["preset"] == "sd15" and config["model"]["source"] == str(real_arch_models.sd15)
    assert (config["runtime"]["shard_workers"], config["runtime"]["train_processes"]) == (0, 1)
    table = (tmp_path / "sd15-random" / "report" / "metrics.txt").read_text()
    for label in ("base", "round-00", "round-01"):
        assert label in table
    assert "clipscore" in table and "aesthetic" in table
    shutil.rmtree(tmp_path / "sd15-random")  # 26 GB of checkpoints


def test_worker_scripts_start_without_gpus_and_stop_only_their_own_workers(prefect_server, tmp_path):
    """On a pool of its own (SAIL_POOL): a worker creates its pool on the server, and the cluster's fixture
    creates sail-gpu on the same server, whichever of the two runs first."""
    bin_dir = str(Path(sys.executable).parent)
    env = {**prefect_server, "PATH": f"{bin_dir}:/usr/bin:/bin", "SAIL_POOL": "scripts-test"}  # no nvidia-smi
    started = subprocess.run(["bash", str(ROOT / "deployments/start-workers.sh")], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pids = [int(p) for p in (tmp_path / "logs/workers.pids").read_text().split()]
    assert len(pids) == 1 and "control worker" in started.stdout  # no GPU: the control worker only
    other, handle = start_worker(prefect_server, "gpu", "someone-elses", tmp_path / "other", pool="scripts-test")
    try:
        stopped = subprocess.run(["bash", str(ROOT / "deployments/stop-workers.sh")], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert "SIGKILL" not in stopped.stdout, stopped.stdout  # an idle worker stops when asked
        assert not _alive(pids[0]) and other.poll() is None  # ours stopped, the other worker still runs
    finally:
        stop_worker(other)
        handle.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as stopped
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _script(name: str, host: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", str(ROOT / "deployments" / name)], cwd=host, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def _engine_processes(flow_run_id: str) -> list[int]:
    """Processes running the flow run (its engine has PREFECT__FLOW_RUN_ID in its environment)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode() in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def _when(path: Path, pattern: str, timeout: float = 600) -> None:
    """Wait until a file matching ``pattern`` exists under ``path`` (a stage of the run has finished)."""
    deadline = time.monotonic() + timeout
    while not any(path.glob(pattern)):
        assert time.monotonic() < deadline, f"{pattern} did not appear under {path}"
        time.sleep(0.1)


def _stop_mid_round(host: Path, env: dict, flow_run_id: str) -> object:
    """``deployments/stop-workers.sh`` while the run works: the worker stops in seconds without SIGKILL, no
    engine process is left, and the flow run ends visibly Crashed (or Cancelled)."""
    stopped = _script("stop-workers.sh", host, env)
    assert "ending 1 running flow run(s)" in stopped.stdout and "SIGKILL" not in stopped.stdout, stopped.stdout
    assert _engine_processes(flow_run_id) == []
    run, _ = wait(env, flow_run_id, timeout=60)
    assert run.state.is_crashed() or run.state.is_cancelled(), run.state
    return run


def test_a_deployment_run_stopped_mid_round_resumes_in_the_deploying_checkout(cluster, golden_files, tmp_path):
    """The README's path, with no runs_dir: the run lives in the checkout `prefect deploy` ran in (not in
    the worker's temporary clone), so a rerun of the deployment with the same run name, and
    `prefect flow-run retry`, each resume it with every finished stage Cached, to the bytes of an
    uninterrupted run. The control worker is the user's (deployments/start-workers.sh and stop-workers.sh);
    the rerun spreads generation and ranking over the gpu queue's two workers."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in cluster.env.items() if k != "PYTHONPATH"}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(tmp_path), SAIL_CACHE_DIR=str(tmp_path / "cache"))
    runs = cluster.code / "runs"
    run_dir = golden_files.copy_iteration_0(runs, "resume")
    cluster.stop_worker("control")  # this test's own control worker takes the control queue
    try:
        _script("start-workers.sh", tmp_path, env)
        first = deployment_run(env, "sail-loop/world", "run_name=resume", f"overrides={json.dumps(TINY_WORLD)}")
        _when(run_dir / "round-01", "prompts-*.json")  # round 1 has begun: its prompts are drawn
        _stop_mid_round(tmp_path, env, first)
        assert not list(Path(tempfile.gettempdir()).glob("*prefect/" + CLONE_MARK)), "a clone was left behind"

        # the rerun shards: a runtime setting, in no stage's cache key
        sharded = {**TINY_WORLD, "runtime.shard_workers": 2, "runtime.shard_poll_seconds": 0.5}
        _script("start-workers.sh", tmp_path, env)
        second = deployment_run(env, "sail-loop/world", "run_name=resume", f"overrides={json.dumps(sharded)}")
        _when(run_dir / "round-01", "mix-*.json")  # stopped again, later in the round
        _stop_mid_round(tmp_path, env, second)
        states = task_states(second)
        for name in ("seed", "train-round-00", "evaluate-base", "evaluate-round-00", "prompts-round-01"):
            assert states[name] == "Cached", (name, states)

        _script("start-workers.sh", tmp_path, env)
        cli(env, "flow-run", "retry", second)
        retried, others = wait(env, second, timeout=900)
        assert retried.state.is_completed(), retried.state.message
        states = task_states(second)
        for name in ("prompts-round-01", "generate-round-01", "rank-round-01", "mix-round-01"):
            assert states[name] == "Cached", (name, states)
    finally:
        _script("stop-workers.sh", tmp_path, env)
    # the rerun's round sent each shard run to generate and then rank its shards (one model load, no barrier in
    # between); named from creation, tagged with the run, and children of their round in the UI
    rounds = {r.id for r in others if r.name == "resume-round-01" and parent_flow_run(env, r) == retried.id}
    shard_runs = [r for r in others if r.name.startswith("resume-round-01-shard")]
    assert rounds and {parent_flow_run(env, r) for r in shard_runs} <= rounds
    assert sorted(r.name for r in shard_runs) == ["resume-round-01-shard-0", "resume-round-01-shard-1"]
    assert all(r.state.is_completed() for r in shard_runs), [r.state for r in shard_runs]
    assert all({"sail", "run:resume", "world"} <= set(r.tags) for r in shard_runs), [r.tags for r in shard_runs]
    assert len(list(next(run_dir.glob("round-01/generate-*/")).glob("shard-*.parquet"))) == 4
    assert len(list(next(run_dir.glob("round-01/rank-*/")).glob("pairs-*.parquet"))) == 4
    # resumed twice, sharded on the way, and the same as the uninterrupted, unsharded run
    assert same_artifacts(run_dir, golden_files.dir) == []


def test_a_round_waiting_for_gpu_workers_says_why_and_cancelling_its_run_cancels_its_shard_runs(
        cluster, golden_files, tmp_path):
    """The gpu queue paused (no worker takes shard runs): the preflight warns, the round says why within its
    warning time, and cancelling the run from the UI or CLI cancels the shard runs it left queued."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.shards import _idle_queue_warning

    cluster.start_worker("control")
    golden_files.copy_iteration_0(tmp_path, "waits")
    overrides = {**TINY_WORLD, "runtime.shard_workers": 2, "runtime.shard_poll_seconds": 0.5,
                 "runtime.shard_wait_warning_seconds": 2}
    cli(cluster.env, "work-queue", "pause", "gpu", "--pool", "sail-gpu")
    try:
        run_id = _world_run(cluster.env, tmp_path, "waits", overrides)
        deadline = time.monotonic() + 300
        while not any("have waited 2 s to start" in line for line in flow_logs(run_id)):
            assert time.monotonic() < deadline, flow_logs(run_id)
            time.sleep(0.5)
        cli(cluster.env, "flow-run", "cancel", run_id)
        cancelled, others = wait(cluster.env, run_id, timeout=120)
    finally:
        cli(cluster.env, "work-queue", "resume", "gpu", "--pool", "sail-gpu")
    assert cancelled.state.is_cancelled(), cancelled.state
    logs = flow_logs(run_id)
    paused = ("the work queue 'gpu' of pool 'sail-gpu' is paused: the shard runs wait until it is resumed "
              "(prefect work-queue resume gpu --pool sail-gpu)")
    assert paused in logs  # the preflight's warning
    assert ("2 shard runs (waits-round-01-shard-0, waits-round-01-shard-1) have waited 2 s to start: "
            + paused) in logs
    shard_runs = shard_runs_of(others, f"{tmp_path}/waits")
    assert sorted((r.name, r.state.name) for r in shard_runs) == [
        ("waits-round-01-shard-0", "Cancelled"), ("waits-round-01-shard-1", "Cancelled")]

    # a queue no worker polls, and one that does not exist, are said as such
    cli(cluster.env, "work-queue", "create", "nobody", "--pool", "sail-gpu")
    with temporary_settings({PREFECT_API_URL: cluster.env["PREFECT_API_URL"]}):
        from prefect import get_client

        with get_client(sync_client=True) as client:
            assert _idle_queue_warning(client, "sail-gpu", "nobody") == (
                "no worker polls the work queue 'nobody' of pool 'sail-gpu' (it has not been polled lately): the shard "
                "runs wait until one does; start one per GPU with deployments/start-workers.sh")
            assert "(it does not exist yet)" in _idle_queue_warning(client, "sail-gpu", "missing")
