"""The one way a declared stage is executed: key → finished? → run → record.

:func:`prepare` computes a stage's key and directory; :meth:`PreparedStage.finished` returns the
record of an earlier, still intact execution (a stage whose files changed since is set aside and
recomputed, never trusted); :meth:`PreparedStage.execute` runs the work and records it. The Prefect
tasks, the shard flow and ``sail evaluate`` all go through here; :func:`run_stage` is the two steps
together for plain Python callers.

A run with a remote store (:class:`sail_core.io.remote.RunStore`) is a working copy of the store's run:
a stage is finished when the *store* holds its record and data intact (so a cached stage costs no
download); executing it first pulls exactly what it reads (its inputs' artifacts and models, then
what the stage's ``reads`` asks for), and a finished stage's directory and record are pushed.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from sail_core.config import SailConfig
from sail_core.errors import IntegrityError
from sail_core.io.atomic import tree_digest
from sail_core.io.remote import RunStore
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.run.bookkeeping import (
    finished_record,
    read_entry,
    record_finished,
    set_aside_if_changed,
    set_aside_in_store,
    sidecar,
    stage_dir,
)
from sail_core.run.code_identity import code_digest
from sail_core.run.keys import StageKey, input_fingerprints
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.records import Record
from sail_core.run.stage import Progress, Stage, StageContext, StageInputs, no_progress, use_threads

R = TypeVar("R", bound=Record)

log = logging.getLogger(__name__)


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
    store: RunStore | None = None
    """The run's remote store; None (or a local one) when the run directory is the run."""
    set_aside: Path | str | None = None
    """Where :meth:`finished` moved this stage's changed files, if it did."""

    @property
    def out_dir(self) -> Path:
        return stage_dir(self.layout, self.key)

    @property
    def remote(self) -> bool:
        return self.store is not None and self.store.remote

    def finished(self) -> R | None:
        """The record of an earlier execution whose files are intact, else None. A finished stage whose
        files changed is moved aside (``<run>/.changed/``) first, so it recomputes from nothing."""
        if self.remote:
            return self._finished_in_store()
        self.set_aside = set_aside_if_changed(self.layout, self.key)
        return finished_record(self.layout, self.key, self.stage.record)

    def _finished_in_store(self) -> R | None:
        """Finished when the store holds the record, pointers with the recorded hash, and every object
        they name (with its size; an object lost since is first replaced from a good copy on this host).
        Otherwise the stage is set aside there and recomputed: a lost object is never left for a later
        stage to trip over."""
        store, record_rel = self.store, self.layout.rel(sidecar(self.layout, self.key))
        base = self.layout.rel(self.out_dir)
        try:
            data = store.read_bytes(record_rel)
        except IntegrityError:  # the record's own object is lost: nothing says what the stage made
            data = b""
        if data is None:
            return None
        held = store.listing(base)
        entry = read_entry(data) if data else None
        if entry is not None:
            recorded = Artifact.model_validate(entry["data"])
            digest = tree_digest({rel[len(base) + 1:]: ref.sha256 for rel, ref in held.items()})
            if digest == recorded.sha256 and all(store.stored_problem(ref) is None or store.repair(rel, ref)
                                                 for rel, ref in held.items()):
                return self.stage.record.model_validate(entry["record"])
        # the store's copy changed or lost objects since it finished: set it aside there (pointers only) and here
        self.set_aside = set_aside_in_store(store, self.layout, record_rel)
        return None

    def execute(self, progress: Progress = no_progress, shards: Sequence[int] | None = None) -> R | None:
        """Run the stage into its directory (resuming from what is there) and record it as finished.
        With ``shards``, compute only those shards and record nothing: the stage finishes when a call
        without ``shards`` finds every shard done."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        use_threads(self.config.runtime.threads)
        ctx = StageContext(self.config, self.layout, self.out_dir, progress, shards, self.store)
        if self.remote:
            self._pull_reads(ctx)
        record = self.stage.run(ctx, self.inputs)
        if shards is not None:
            return None
        if record is None:
            raise RuntimeError(f"stage {self.stage.name} {self.key.group} returned no record")
        record_finished(self.layout, self.key, record)
        if self.remote:  # data first, then the record that says it is complete
            self.store.mirror(self.out_dir)
            self.store.push([sidecar(self.layout, self.key)])
        return record

    def _pull_reads(self, ctx: StageContext) -> None:
        """Exactly what the work reads: its inputs' artifacts and models; its own directory when it is to
        finish (resuming from what any host left there); then the stage's own ``reads``, batch by batch."""
        self.store.pull(input_files(self.inputs))
        if ctx.shards is None:
            self._pull_resume_state()
        for batch in self.stage.reads(ctx, self.inputs) if self.stage.reads else ():
            self.store.pull(batch)


    def _pull_resume_state(self) -> None:
        """What earlier attempts left in the stage's directory. Where an object of it is lost, the partial
        work cannot be trusted as a whole (a shard's table without its tensors would count as done): it
        is dropped, here and in the store, and the stage starts afresh instead of failing on every rerun."""
        try:
            self.store.pull([self.out_dir])
        except IntegrityError as exc:
            log.warning("%s %s: dropping its partial work, which lost an object (%s)", self.stage.name,
                        self.key.group, exc)
            self.store.forget(list(self.store.listing(self.layout.rel(self.out_dir))))
            shutil.rmtree(self.out_dir)
            self.out_dir.mkdir(parents=True)


def input_files(inputs: Any) -> list[str]:
    """The run files a stage's inputs name: every artifact, and the weights of every model
    (a fine-tuned UNet folder, or a LoRA lineage's adapters; the base model lives outside the run)."""
    return list(dict.fromkeys(_input_files(inputs)))


def _input_files(value: Any) -> Iterator[str]:
    if isinstance(value, Artifact):
        yield value.path
    elif isinstance(value, UnetCheckpoint):
        yield from ([value.weights] if value.weights else [])
        yield from value.adapters
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _input_files(getattr(value, name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _input_files(item)


def prepare(stage: Stage, config: SailConfig, layout: RunLayout, inputs: StageInputs,
            store: RunStore | None = None) -> PreparedStage:
    return PreparedStage(stage, config, layout, inputs, stage_key(stage, config, inputs), store)


def run_stage(stage: Stage, config: SailConfig, layout: RunLayout, inputs: StageInputs,
              progress: Progress = no_progress) -> Record:
    """The stage's record: reused when an intact execution exists, else computed now."""
    prepared = prepare(stage, config, layout, inputs)
    record = prepared.finished()
    return record if record is not None else prepared.execute(progress)
