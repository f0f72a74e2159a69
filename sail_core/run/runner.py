"""The one way a declared stage is executed: key → finished? → run → record.

:func:`prepare` computes a stage's key and directory; :meth:`PreparedStage.finished` returns the
record of an earlier, still intact execution (a stage whose files changed since is set aside and
recomputed, never trusted); :meth:`PreparedStage.execute` runs the work and records it. The Prefect
tasks, the shard flow and ``sail evaluate`` all go through here; :func:`run_stage` is the two steps
together for plain Python callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from sail_core.config import SailConfig
from sail_core.run.bookkeeping import finished_record, record_finished, set_aside_if_changed, stage_dir
from sail_core.run.code_identity import code_digest
from sail_core.run.keys import StageKey, input_fingerprints
from sail_core.run.layout import RunLayout
from sail_core.run.records import Record
from sail_core.run.stage import Progress, Stage, StageContext, StageInputs, no_progress, use_threads

R = TypeVar("R", bound=Record)


def stage_key(stage: Stage, config: SailConfig, inputs: StageInputs) -> StageKey:
    if not isinstance(inputs, stage.inputs):
        raise TypeError(f"stage {stage.name!r} takes {stage.inputs.__name__}, got {type(inputs).__name__}")
    return StageKey(stage=stage.name, group=stage.group(inputs), settings=stage.settings(config, inputs),
                    inputs=input_fingerprints(inputs, stage.external(config, inputs)),
                    code=code_digest(stage.modules))


@dataclass
class PreparedStage(Generic[R]):
    stage: Stage
    config: SailConfig
    layout: RunLayout
    inputs: StageInputs
    key: StageKey
    set_aside: Path | None = None
    """Where :meth:`finished` moved this stage's changed files, if it did."""

    @property
    def out_dir(self) -> Path:
        return stage_dir(self.layout, self.key)

    def finished(self) -> R | None:
        """The record of an earlier execution whose files are intact, else None. A finished stage whose
        files changed is moved aside (``<run>/.changed/``) first, so it recomputes from nothing."""
        self.set_aside = set_aside_if_changed(self.layout, self.key)
        return finished_record(self.layout, self.key, self.stage.record)

    def execute(self, progress: Progress = no_progress, shards: Sequence[int] | None = None) -> R | None:
        """Run the stage into its directory (resuming from what is there) and record it as finished.
        With ``shards``, compute only those shards and record nothing: the stage finishes when a call
        without ``shards`` finds every shard done."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        use_threads(self.config.runtime.threads)
        ctx = StageContext(self.config, self.layout, self.out_dir, progress, shards)
        record = self.stage.run(ctx, self.inputs)
        if shards is not None:
            return None
        if record is None:
            raise RuntimeError(f"stage {self.stage.name} {self.key.group} returned no record")
        record_finished(self.layout, self.key, record)
        return record


def prepare(stage: Stage, config: SailConfig, layout: RunLayout, inputs: StageInputs) -> PreparedStage:
    return PreparedStage(stage, config, layout, inputs, stage_key(stage, config, inputs))


def run_stage(stage: Stage, config: SailConfig, layout: RunLayout, inputs: StageInputs,
              progress: Progress = no_progress) -> Record:
    """The stage's record: reused when an intact execution exists, else computed now."""
    prepared = prepare(stage, config, layout, inputs)
    record = prepared.finished()
    return record if record is not None else prepared.execute(progress)
