"""The flow's handle on one run: where it lives, its configuration, and how a stage is called.

:class:`PipelineRun` is what the flows pass around (it is a plain, serialisable model, so it can be a
subflow's parameter). ``stage`` runs a declared stage as the generic Prefect task, named
``<stage>-<group>`` in the UI, each said once (``seed``, ``evaluate-base``, ``train-round-01``; with a
remote run store, the runner pulls what the stage reads and pushes what it wrote); ``sharded`` first
spreads stages' shards over the pool's GPU workers when ``runtime.shard_workers`` asks for it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prefect import get_client, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.context import FlowRunContext, TagsContext
from prefect.exceptions import MissingContextError
from prefect.runtime import flow_run
from prefect.states import Failed, State
from pydantic import BaseModel, ConfigDict

from sail_core.config import SailConfig
from sail_core.errors import InputError
from sail_core.evaluation.run_report import write_manifest, write_run_report
from sail_core.io.remote import RunStore
from sail_core.io.tables import read_table
from sail_core.run.layout import Artifact, RunLayout, check_run_name
from sail_core.run.lineage import ModelRef
from sail_core.run.lock import run_lock
from sail_core.run.records import EvalRecord, ExportRecord, Record
from sail_core.run.runner import prepare
from sail_core.run.stage import Stage, StageInputs, stage_label
from sail_core.run.workdir import deployment_workdir, mark_clone, sweep_dead_clones, temporary_clone
from sail_core.stages import EVALUATE, EXPORT, TRAIN, EvaluateInputs, ExportInputs, TrainInputs
from tasks.artifact_keys import run_key
from tasks.shards import dispatch_shards, shard_queue_problem
from tasks.stage_task import stage_task
from tasks.termination import termination_kept


def _images_file(record: EvalRecord) -> str:
    """The table of the images an evaluation's grid shows (prompt, seed, PNG), beside its scores."""
    return (Path(record.scores.path).parent / "images.parquet").as_posix()


def planned_stages(config: SailConfig) -> list[str]:
    """The stages a run of ``config`` goes through, in order, as the UI names them."""
    plan = ["evaluate-base"]
    if config.seed_data.pairs:
        plan += ["seed", "train-round-00", "evaluate-round-00"]
    if config.mixup.real_generated or config.mixup.real_perturbed:
        plan.append("real")
    for i in range(1, config.rounds + 1):
        if config.mixup.alpha > 0:
            plan += [f"prompts-round-{i:02d}", f"generate-round-{i:02d}", f"rank-round-{i:02d}"]
        plan += [f"mix-round-{i:02d}", f"train-round-{i:02d}", f"evaluate-round-{i:02d}"]
    if config.export.enabled:
        plan.append("export")
    return plan


def run_location(runs_dir: str, run_name: str) -> str:
    """``<runs_dir>/<run_name>``, for a valid run name only (one path component: it cannot escape ``runs_dir``)."""
    return f"{runs_dir.rstrip('/')}/{check_run_name(run_name)}"


@contextlib.contextmanager
def hold_run(runs_dir: str, run_name: str) -> Iterator[str | None]:
    """Lock the run's (local working) directory for this process; yields the holder line of a lock taken
    over from a dead process, if any."""
    with run_lock(RunStore(run_location(runs_dir, run_name)).local) as took_over:
        yield took_over


def enter_deployment_workdir() -> Path | None:
    """In a deployment's flow run: mark the worker's temporary clone as this process's, remove the clones that
    killed flow runs left, and move into the deployment's working directory (``sail_core.run.workdir``),
    where relative run and data paths mean what they mean to ``sail run`` started there. Outside a
    deployment (``sail run``, a flow called in Python) nothing changes."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow_run.deployment_id is None:
        return None
    clone = temporary_clone()
    if clone is not None:
        mark_clone(clone)
        for removed in sweep_dead_clones():
            get_run_logger().info("removed %s, the temporary directory of a flow run whose worker was killed", removed)
    workdir = deployment_workdir()
    if workdir is not None:
        # the flow's modules are imported already and sys.path holds absolute paths: only relative paths change
        os.chdir(workdir)
    return workdir


def refuse(error: InputError) -> State:
    """A run that cannot start: each line of the error once in the log (real lines, not an escaped block) and
    a Failed state whose message is the first line; the exception stays the state's result (``sail run``
    prints it as it always did)."""
    try:
        logger = get_run_logger()
    except MissingContextError:  # the flow's function called outside a flow run: no UI to speak to
        raise error from None
    for line in str(error).splitlines():
        logger.error(line)
    return Failed(data=error, message=str(error).splitlines()[0].rstrip(":") + " (the problems are in the log)")


def warn_about_workers(config: SailConfig) -> None:
    """With ``runtime.shard_workers``: no ``sail-shard/gpu`` deployment is an input error; a gpu queue that no
    worker polls is a warning (a worker may be started later: the round waits for one)."""
    if config.runtime.shard_workers == 0:
        return
    problem, warning = shard_queue_problem()
    if problem:
        raise InputError(problem, parameter="runtime.shard_workers")
    if warning:
        get_run_logger().warning(warning)


def tag_flow_run(run_name: str) -> list[str]:
    """Add ``sail`` and ``run:<name>`` to the current flow run's tags and return all of its tags, so the
    subflows and shard runs started under them carry the same ones (search the UI by either). Stage task
    runs carry none (:meth:`PipelineRun.stage`)."""
    wanted = list(dict.fromkeys([*flow_run.get_tags(), "sail", f"run:{run_name}"]))
    if flow_run.get_id() is not None and set(wanted) != set(flow_run.get_tags()):
        with get_client(sync_client=True) as client:
            client.update_flow_run(flow_run.get_id(), tags=wanted)
    return wanted


class PipelineRun(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_name: str
    location: str
    """``<runs_dir>/<run_name>``: a local directory or an fsspec URL (``s3://...``)."""
    run_dir: str
    """The local working copy (the location itself when it is local)."""
    config: SailConfig
    progress_id: str | None = None
    """The run's own progress artifact (on the run's page): the share of its planned stages done."""

    @staticmethod
    def open(config: SailConfig, runs_dir: str, run_name: str) -> PipelineRun:
        """A remote run is not downloaded: each stage pulls what it reads when it runs."""
        location = run_location(runs_dir, run_name)
        store = RunStore(location)
        plan = planned_stages(config)
        progress_id = create_progress_artifact(
            progress=0.0, key=f"progress-{run_key(run_name)}",
            description=f"run {run_name}: {len(plan)} stages ({config.rounds} rounds after iteration 0)")
        return PipelineRun(run_name=run_name, location=location, run_dir=str(store.local), config=config,
                           progress_id=str(progress_id) if progress_id else None)

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def store(self) -> RunStore:
        return RunStore(self.location, local=self.run_dir)

    def stage(self, stage: Stage, inputs: StageInputs, *, config: SailConfig | None = None) -> Record:
        """Run (or reuse) one stage; ``config`` replaces the run's for a derived use of a stage (e.g.
        RealAlign's negatives come from the generation stage with its own candidate count)."""
        config = config or self.config
        group = stage.group(inputs)
        location = self.location if self.store.remote else None
        label = stage_label(stage.name, group)
        # untagged: Prefect asks its API for a concurrency slot of every tag of a task run as the task starts,
        # a round trip per stage (about 0.2 s) that no sail run uses
        with termination_kept(), TagsContext(current_tags=set()):  # a stop during the stage ends the run Crashed
            state = stage_task.with_options(name=stage.name, task_run_name=label)(
                stage.name, inputs, config, self.run_dir, self.run_name, location, return_state=True)
            record = state.result()
        self._advance(label)
        return record

    def _advance(self, label: str) -> None:
        plan = planned_stages(self.config)
        if self.progress_id is None or label not in plan:
            return
        done = plan.index(label) + 1
        update_progress_artifact(artifact_id=self.progress_id, progress=100.0 * done / len(plan),
                                 description=f"run {self.run_name}: {label} done, stage {done} of {len(plan)}")

    def sharded(self, *steps: tuple[Stage, StageInputs]) -> list[Record]:
        """Sharded stages over the same shards (generation, then ranking of its candidates): with
        ``runtime.shard_workers`` the unfinished ones first go to that many sail-shard runs, each doing
        every step for its shards; then each stage's own task finds its shards done and finishes it."""
        workers = self.config.runtime.shard_workers
        if workers > 0:
            store = self.store
            todo = [(s, i) for s, i in steps if prepare(s, self.config, self.layout, i, store).finished() is None]
            if todo:
                dispatch_shards(self.location, self.config, todo, workers, self.run_name)
        return [self.stage(stage, inputs) for stage, inputs in steps]

    def train(self, round_index: int, pairs: Artifact, init: ModelRef) -> ModelRef:
        record = self.stage(TRAIN, TrainInputs(round_index=round_index, pairs=pairs, init=init))
        get_run_logger().info("round %d DPO: %d steps, final %s", round_index, record.steps,
                              {k: round(v, 4) for k, v in record.final_metrics.items()})
        return record.model

    def evaluate(self, model: ModelRef, label: str, baseline: EvalRecord | None = None) -> EvalRecord:
        record = self.stage(EVALUATE, EvaluateInputs(model=model, label=label, baseline=baseline))
        if record.grid is not None:
            self.store.pull([record.grid.path, _images_file(record)])
        return record

    def grid_prompts(self, record: EvalRecord, limit: int | None = None) -> list[str]:
        """The prompts of an evaluation's sample grid, one per row, in order (empty without a grid)."""
        path = Path(self.run_dir) / _images_file(record)
        if record.grid is None or not path.exists():
            return []
        prompts = list(dict.fromkeys(read_table(path, columns=["prompt"]).column("prompt").to_pylist()))
        return prompts[:limit]

    def report(self, report_dir: str, evaluations: Sequence[EvalRecord], models: Sequence[ModelRef]) -> Path:
        """The run's report and manifest (``write_run_report``), from what the store holds, pushed back."""
        store = self.store
        store.pull([Path(e.scores.path).parent / "images.parquet" for e in evaluations])
        store.pull(store.records())  # every finished stage's record, for the manifest
        report = write_run_report(self.layout, report_dir, evaluations, models, self.config)
        store.push([report, self.layout.root / "manifest.json"])
        return report

    def export(self, evaluations: Sequence[EvalRecord], models: Sequence[ModelRef]) -> ExportRecord:
        """The chosen model (``export.model``) as a folder diffusers loads, in ``<run>/export/``; the run's
        manifest, written with the report before it, then lists it too."""
        record = self.stage(EXPORT, ExportInputs(models=tuple(models), evaluations=tuple(evaluations)))
        store = self.store
        store.pull(store.records())
        store.push([write_manifest(self.layout)])
        return record

    def export_location(self, record: ExportRecord) -> str:
        """Where the export is: a local path (absolute), or its URL in the run's store."""
        if self.store.remote:
            return f"{self.location.rstrip('/')}/{record.folder.path}"
        return str((Path(self.run_dir) / record.folder.path).resolve())

    def log(self, message: str, *args: Any) -> None:
        get_run_logger().info(message, *args)
