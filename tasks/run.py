"""The flow's handle on one run: where it lives, its configuration, and how a stage is called.

:class:`PipelineRun` is what the flows pass around (it is a plain, serialisable model, so it can be a
subflow's parameter). ``stage`` runs a declared stage as the generic Prefect task, named
``<stage>-<group>`` in the UI (with a remote run store, the runner pulls what the stage reads and
pushes what it wrote); ``sharded`` first spreads stages' shards over the pool's GPU workers when
``runtime.shard_workers`` asks for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prefect import get_client, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict

from sail_core.config import SailConfig
from sail_core.evaluation.run_report import write_manifest, write_run_report
from sail_core.io.remote import RunStore
from sail_core.run.layout import Artifact, RunLayout, check_run_name
from sail_core.run.lineage import ModelRef
from sail_core.run.lock import run_lock
from sail_core.run.records import EvalRecord, ExportRecord, Record
from sail_core.run.runner import prepare
from sail_core.run.stage import Stage, StageInputs
from sail_core.stages import EVALUATE, EXPORT, TRAIN, EvaluateInputs, ExportInputs, TrainInputs
from tasks.shards import dispatch_shards
from tasks.stage_task import stage_task


def run_location(runs_dir: str, run_name: str) -> str:
    """``<runs_dir>/<run_name>``, for a valid run name only (one path component: it cannot escape ``runs_dir``)."""
    return f"{runs_dir.rstrip('/')}/{check_run_name(run_name)}"


@contextlib.contextmanager
def hold_run(runs_dir: str, run_name: str) -> Iterator[str | None]:
    """Lock the run's (local working) directory for this process; yields the holder line of a lock taken
    over from a dead process, if any."""
    with run_lock(RunStore(run_location(runs_dir, run_name)).local) as took_over:
        yield took_over


def tag_flow_run(run_name: str) -> list[str]:
    """Add ``sail`` and ``run:<name>`` to the current flow run's tags and return all of its tags, so the
    subflows and tasks started under them carry the same ones (search the UI by either)."""
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
    fault: str | None = None
    """Fault injection for tests (``tasks.faults``)."""

    @staticmethod
    def open(config: SailConfig, runs_dir: str, run_name: str, fault: str | None = None) -> PipelineRun:
        """A remote run is not downloaded: each stage pulls what it reads when it runs."""
        location = run_location(runs_dir, run_name)
        store = RunStore(location)
        return PipelineRun(run_name=run_name, location=location, run_dir=str(store.local), config=config, fault=fault)

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
        state = stage_task.with_options(name=stage.name, task_run_name=f"{stage.name}-{group}")(
            stage.name, inputs, config, self.run_dir, self.fault, self.run_name, location, return_state=True)
        return state.result()

    def sharded(self, *steps: tuple[Stage, StageInputs]) -> list[Record]:
        """Sharded stages over the same shards (generation, then ranking of its candidates): with
        ``runtime.shard_workers`` the unfinished ones first go to that many sail-shard runs, each doing
        every step for its shards; then each stage's own task finds its shards done and finishes it."""
        workers = self.config.runtime.shard_workers
        if workers > 0:
            store = self.store
            todo = [(s, i) for s, i in steps if prepare(s, self.config, self.layout, i, store).finished() is None]
            if todo:
                dispatch_shards(self.location, self.config, todo, workers, self.fault)
        return [self.stage(stage, inputs) for stage, inputs in steps]

    def train(self, round_index: int, pairs: Artifact, init: ModelRef) -> ModelRef:
        record = self.stage(TRAIN, TrainInputs(round_index=round_index, pairs=pairs, init=init))
        get_run_logger().info("round %d DPO: %d steps, final %s", round_index, record.steps,
                              {k: round(v, 4) for k, v in record.final_metrics.items()})
        return record.model

    def evaluate(self, model: ModelRef, label: str, baseline: EvalRecord | None = None) -> EvalRecord:
        record = self.stage(EVALUATE, EvaluateInputs(model=model, label=label, baseline=baseline))
        if record.grid is not None:
            self.store.pull([record.grid.path])
        return record

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
