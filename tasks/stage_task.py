"""The one Prefect task every stage runs as.

It asks the runner (:mod:`sail_core.run.runner`) whether the stage already finished with its files
intact; if so it returns the record in a ``Cached`` state (the run directory, not Prefect's result
storage, is the cache: a run copied or moved elsewhere resumes), otherwise it runs the stage with a
progress artifact. Retries are for errors a retry can help (I/O, a lost worker), never for bad
input, a diverged loss or an injected fault.
"""

from __future__ import annotations

from prefect import Task, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.states import Completed, State

from sail_core.config import SailConfig
from sail_core.errors import is_deterministic
from sail_core.io.remote import RunStore
from sail_core.run.layout import RunLayout
from sail_core.run.records import Record
from sail_core.run.runner import prepare
from sail_core.run.stage import StageInputs
from sail_core.stages import STAGES
from tasks.artifact_keys import progress_key
from tasks.faults import InjectedFault, check_fault, kill_after
from tasks.progress import StageProgress
from tasks.termination import termination_arrived
from tasks.transfers import log_transfers


def _retry_unless_deterministic(task_: Task, task_run: TaskRun, state: State) -> bool:
    """Retry I/O errors and lost workers; never bad input, a NaN loss, damaged bytes, a missing file, a full
    disk or an injected fault (``is_deterministic``: a retry would fail the same way, seconds later); nor a
    stage whose process was asked to stop while it ran (the stop may surface as another error)."""
    if termination_arrived():
        return False
    try:
        state.result()
    except InjectedFault:
        return False
    except Exception as exc:  # noqa: BLE001 - anything else may be transient
        return not is_deterministic(exc)
    return False


@task(name="stage", persist_result=False, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5,
      retry_condition_fn=_retry_unless_deterministic)
def stage_task(stage: str, inputs: StageInputs, config: SailConfig, run_dir: str, run_name: str = "",
               location: str | None = None) -> Record | State:
    """Run ``STAGES[stage]`` on ``inputs`` in the run directory, or return its finished record as ``Cached``.
    ``location``: the run's remote store, when ``run_dir`` is a working copy of one."""
    layout = RunLayout(run_dir)
    store = RunStore(location, local=run_dir) if location else None
    prepared = prepare(STAGES[stage], config, layout, inputs, store)
    record = prepared.finished()
    group = prepared.key.group
    if prepared.set_aside is not None:
        get_run_logger().warning("%s %s: its files changed or were lost after it finished; moved to %s and "
                                 "recomputing", stage, group, prepared.set_aside)
    if record is not None:
        return Completed(data=record, name="Cached", message=f"finished earlier: {layout.rel(prepared.out_dir)}")
    check_fault(stage, group)
    try:
        with StageProgress(progress_key(run_name, stage, group), f"{stage} {group} of {run_name or run_dir}",
                           kill_after(stage, group)) as progress:
            return prepared.execute(progress)
    finally:
        if store is not None and store.remote:
            log_transfers(store, f"{stage}-{group}")
