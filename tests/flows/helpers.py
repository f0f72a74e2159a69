"""Reading what a real Prefect server recorded about a flow run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId, TaskRunFilter


async def _task_states(flow_run_id) -> dict[str, str]:
    async with get_client() as client:
        # a round's tasks belong to its sail-round subflow: collect the parent's and the children's
        children = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        ids = [flow_run_id] + [c.id for c in children]
        runs = await client.read_task_runs(task_run_filter=TaskRunFilter(flow_run_id={"any_": ids}))
        return {r.name: r.state.name for r in runs if r.state is not None}


def task_states(flow_run_id) -> dict[str, str]:
    """Final state name of every task run of a flow run (and of its subflows), by task run name."""
    return asyncio.run(_task_states(flow_run_id))


def tree_bytes(root: Path, skip: tuple[str, ...] = (".prefect",)) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)}
