"""Spreading sharded stages over the pool's GPU workers: one ``sail-shard`` flow run per worker.

With ``runtime.shard_workers = N > 0`` a round's shards are split round-robin into N groups, each run
as a ``sail-shard`` deployment run on the ``gpu`` work queue, where each worker is pinned to one GPU
(deployments/start-workers.sh), on any host. A shard run executes a list of stages for the same
shards, in order (generation, then ranking of what it generated: one model load, no barrier between
them). Shards are the same units as in-process work, so a failed group reruns only its unfinished
shards. Each step carries the key the flow expects, so a worker running other code (or another
config) fails with that said, instead of writing somewhere the flow will not look.

In the UI the shard runs are children of their round (created from the round's flow run, named
``<run>-round-NN-shard-K`` from creation and tagged like the round). A round whose shard runs have
not started after ``runtime.shard_wait_warning_seconds`` says why in its log (no worker polls the queue), and a round
that fails or is cancelled cancels the shard runs it started.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prefect import get_client, get_run_logger
from prefect.client.schemas.objects import FlowRun, WorkQueueStatus
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run
from prefect.states import Cancelled, Cancelling

from sail_core.config import SailConfig
from sail_core.run.runner import stage_key
from sail_core.run.stage import Stage, StageInputs
from tasks.faults import FAULT_ENV, injected_fault

SHARD_DEPLOYMENT = "sail-shard/gpu"


def shard_groups(n_shards: int, workers: int) -> list[list[int]]:
    return [list(range(w, n_shards, workers)) for w in range(min(workers, n_shards))]


def shard_run_name(run_name: str, group: str, index: int) -> str:
    """``<run>-round-01-shard-0``: the run, the round, the worker's share."""
    return f"{run_name}-{group}-shard-{index}"


def shard_queue_problem() -> tuple[str | None, str | None]:
    """(error, warning) about where shard runs go: the deployment missing is an error; its work queue with
    no worker polling it a warning."""
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(SHARD_DEPLOYMENT)
        except ObjectNotFound:
            return (f"shard runs go to the deployment {SHARD_DEPLOYMENT}, which this Prefect server does not have: "
                    "deploy it (prefect --no-prompt deploy --all), or set runtime.shard_workers=0"), None
        return None, _idle_queue_warning(client, deployment.work_pool_name, deployment.work_queue_name)


def _idle_queue_warning(client: Any, pool: str | None, queue_name: str | None) -> str | None:
    try:
        queue = client.read_work_queue_by_name(queue_name or "default", work_pool_name=pool)
    except ObjectNotFound:
        queue = None
    if queue is not None and queue.status == WorkQueueStatus.READY:
        return None
    if queue is not None and (queue.is_paused or queue.status == WorkQueueStatus.PAUSED):
        return (f"the work queue {queue_name!r} of pool {pool!r} is paused: the shard runs wait until it is resumed "
                f"(prefect work-queue resume {queue_name} --pool {pool})")
    state = "does not exist yet" if queue is None else "has not been polled lately"
    return (f"no worker polls the work queue {queue_name!r} of pool {pool!r} (it {state}): the shard runs wait "
            "until one does; start one per GPU with deployments/start-workers.sh")


def dispatch_shards(location: str, config: SailConfig, steps: Sequence[tuple[Stage, StageInputs]], workers: int,
                    run_name: str) -> None:
    """Run the steps' shards as ``workers`` sail-shard flow runs and wait for all of them."""
    counts = {stage.shard_count(config, inputs) for stage, inputs in steps if stage.shard_count is not None}
    if len(counts) != 1 or len(steps) != sum(stage.shard_count is not None for stage, _ in steps):
        raise ValueError(f"steps {[s.name for s, _ in steps]} do not share one shard count ({sorted(counts)})")
    groups = shard_groups(counts.pop(), workers)
    group = steps[0][0].group(steps[0][1])
    payload = [{"stage": stage.name, "inputs": inputs.model_dump(mode="json"),
                "key": stage_key(stage, config, inputs).key} for stage, inputs in steps]
    # a test's injected fault reaches the shard runs through their environment, never as a parameter
    fault = injected_fault()
    job_variables = {"env": {FAULT_ENV: fault}} if fault else None
    started: list[FlowRun] = []
    try:
        for index, shards in enumerate(groups):
            name = shard_run_name(run_name, group, index)
            # created here, in the round's own thread: the round's flow run is their parent in the UI
            started.append(run_deployment(
                SHARD_DEPLOYMENT, timeout=0, as_subflow=True, flow_run_name=name, tags=flow_run.get_tags(),
                job_variables=job_variables, parameters={
                    "location": location, "config": config.model_dump(mode="json"), "steps": payload,
                    "shards": shards, "label": name}))
        finished = _wait_for(started, config.runtime.shard_poll_seconds, config.runtime.shard_wait_warning_seconds)
    except BaseException:
        _cancel_unfinished(started)
        raise
    failed = [r.name for r in finished if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"{group}: shard runs {failed} did not complete; rerun to redo only their unfinished "
                           "shards")


def _wait_for(runs: list[FlowRun], poll_seconds: float, warn_after: float) -> list[FlowRun]:
    """Poll until every run is final; once, after ``warn_after`` seconds with none started, log why."""
    began, warned = time.monotonic(), False
    with get_client(sync_client=True) as client:
        while True:
            runs = [client.read_flow_run(r.id) for r in runs]
            if all(r.state is not None and r.state.is_final() for r in runs):
                return runs
            waiting = [r for r in runs if r.state is None or r.state.is_scheduled() or r.state.is_pending()]
            if not warned and len(waiting) == len(runs) and time.monotonic() - began >= warn_after:
                warned = True
                deployment = client.read_deployment_by_name(SHARD_DEPLOYMENT)
                why = _idle_queue_warning(client, deployment.work_pool_name, deployment.work_queue_name)
                get_run_logger().warning("%d shard runs (%s) have waited %.0f s to start%s", len(runs),
                                         ", ".join(r.name for r in runs), warn_after,
                                         f": {why}" if why else "; every worker of their queue is busy")
            time.sleep(poll_seconds)


def _cancel_unfinished(runs: list[FlowRun]) -> None:
    """The round stops (it failed, or its run was cancelled): its shard runs stop too, instead of waiting
    in the queue for a worker."""
    with get_client(sync_client=True) as client:
        for run in runs:
            current = client.read_flow_run(run.id)
            if current.state is None or current.state.is_final():
                continue
            # a run that started is stopped by its worker (Cancelling); one still queued is simply Cancelled
            state = Cancelling if current.state.is_running() else Cancelled
            client.set_flow_run_state(run.id, state(message="its round stopped"), force=True)
