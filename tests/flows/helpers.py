"""Reading what a real Prefect server recorded about a flow run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, TaskRunFilter


async def _task_runs(flow_run_id) -> dict:
    async with get_client() as client:
        # a round's tasks belong to its sail-round subflow: collect the parent's and the children's
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        ids = [flow_run_id] + [c.id for c in children]
        runs = await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id={"any_": ids}))
        # a subflow call also leaves a task run named after the subflow in its parent: not a stage; a flow run
        # retried has each stage's task run once per attempt: the latest one counts
        runs = sorted(runs, key=lambda r: r.created)
        return {r.name: r for r in runs if r.state is not None and not r.name.startswith("sail-round")}


def task_runs(flow_run_id) -> dict:
    """Every task run of a flow run (and of its subflows), by task run name (of a retried run: the last attempt's)."""
    return asyncio.run(_task_runs(flow_run_id))


def task_states(flow_run_id) -> dict[str, str]:
    """Final state name of every task run of a flow run (and of its subflows), by task run name."""
    return {name: run.state.name for name, run in task_runs(flow_run_id).items()}


def tree_bytes(root: Path, skip: tuple[str, ...] = (".prefect",)) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)}


def same_artifacts(a: Path, b: Path) -> list[str]:
    """The files whose content differs between two run directories (each must hold the same files), leaving
    out what records how a run ran rather than what it made: ``report/config.json`` (it records runtime
    settings such as ``runtime.shard_workers``), the lock file, Prefect's folder, and a generation record's
    shard counters (the shards its task found done, after shard runs, or made itself)."""
    skip = (".prefect", ".lock", "config.json")
    first, second = tree_bytes(a, skip=skip), tree_bytes(b, skip=skip)
    assert first.keys() == second.keys(), sorted(first.keys() ^ second.keys())
    return [p for p in first if _artifact(p, first[p]) != _artifact(p, second[p])]


def _artifact(path: str, data: bytes):
    """A file's content for comparison: JSON without the shard counters, any other file as bytes."""
    if not path.endswith(".json"):
        return data

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("shards_generated", "shards_reused")}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip(json.loads(data))


async def _flow_runs(flow_run_id):
    async with get_client() as client:
        parent = await client.read_flow_run(flow_run_id)
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        return parent, children


def flow_runs(flow_run_id):
    """The flow run and its subflow runs, as the server recorded them."""
    return asyncio.run(_flow_runs(flow_run_id))


async def _artifacts(key_prefix: str):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async with get_client() as client:
        key = ArtifactFilterKey(like_=f"{key_prefix}%")
        return await client.read_artifacts(artifact_filter=ArtifactFilter(key=key), sort=ArtifactSort.CREATED_DESC)


def artifacts(key_prefix: str):
    """Every version of every artifact whose key starts with ``key_prefix``, oldest first."""
    newest_first = asyncio.run(_artifacts(key_prefix))  # Prefect 3.8 sorts artifacts newest first only
    return [a for a in reversed(newest_first) if a.key and a.key.startswith(key_prefix)]


async def _logs(flow_run_ids) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(flow_run_ids))),
                                      sort=LogSort.TIMESTAMP_ASC)
        return [log.message for log in logs]


def flow_logs(flow_run_id) -> list[str]:
    """Log messages of a flow run and its subflows (and their tasks), once this process has sent them all."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    parent, children = flow_runs(flow_run_id)
    return asyncio.run(_logs([parent.id, *(c.id for c in children)]))
