"""How stage tasks are cached: by their stage key, in storage that belongs to the run directory.

The cache key of a stage task is its :class:`~sail_core.stages.keys.StageKey` (stage, group,
settings that affect it, content hashes of its inputs). Results are JSON records stored under the
run directory, so a rerun of the same run finds them (state ``Cached``), and two runs never share
them. Before a cached result is used, the stage's data is checked against the hash recorded when
it finished; if anything is missing or changed the task runs again (``refresh_cache``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from prefect import Task, get_run_logger, task
from prefect.cache_policies import CacheKeyFnPolicy
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from sail_core.errors import SailError
from sail_core.stages.bookkeeping import is_finished, set_aside_if_changed
from sail_core.stages.keys import StageKey
from tasks.context import InjectedFault, RunContext

T = TypeVar("T")


def _key_of(task_context: Any, parameters: dict[str, Any]) -> str:
    key: StageKey = parameters["key"]
    return f"{key.stage}-{key.key}"


def _retry_unless_deterministic(task_: Task, task_run: TaskRun, state: State) -> bool:
    """Retry I/O errors and lost workers; never bad input, a NaN loss or an injected fault."""
    try:
        state.result()
    except (SailError, InjectedFault):
        return False
    except Exception:  # noqa: BLE001 - anything else may be transient
        return True
    return False


def stage_task(stage: str, *, retries: int = 2) -> Callable[[Callable[..., T]], Task[..., T]]:
    return task(
        name=stage,
        task_run_name=f"{stage}-{{key.group}}",
        cache_policy=CacheKeyFnPolicy(cache_key_fn=_key_of),
        result_serializer="json",
        persist_result=True,
        retries=retries,
        retry_delay_seconds=5,
        retry_condition_fn=_retry_unless_deterministic,
    )


def run_stage(stage: Task[..., T], ctx: RunContext, key: StageKey, **inputs: Any) -> T:
    """Call a stage task with this run's result storage, re-running it if its data is no longer intact."""
    store = Path(ctx.run_dir) / ".prefect"
    moved = set_aside_if_changed(ctx.layout, key)
    if moved is not None:
        get_run_logger().warning("%s %s: its files changed after it finished; moved to %s and recomputing",
                                 key.stage, key.group, moved)
    intact = is_finished(ctx.layout, key)
    configured = stage.with_options(
        result_storage=store / "results",
        cache_policy=CacheKeyFnPolicy(cache_key_fn=_key_of).configure(key_storage=store / "keys"),
        refresh_cache=not intact,
    )
    return configured(ctx=ctx, key=key, **inputs)
