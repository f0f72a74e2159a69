"""A stage of the pipeline, declared once.

A :class:`Stage` says everything the machinery needs to know about one step of SAIL: its name, the
type of its inputs (upstream records, models, the round), the config sections and external files
that key it, the code that computes it, the function that does the work, and the type of record
it returns. :mod:`sail_core.run.runner` executes any declared stage the same way (key → finished?
→ run → record), and every caller (the Prefect tasks, the shard flow, ``sail evaluate``, tests) goes
through it. The stages themselves are declared in :mod:`sail_core.stages`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import torch
from pydantic import BaseModel, ConfigDict

from sail_core.config import SailConfig
from sail_core.run.layout import RunLayout
from sail_core.run.records import Record

if TYPE_CHECKING:
    from sail_core.io.remote import RunStore
    from sail_core.models.bundle import ModelBundle

I = TypeVar("I", bound="StageInputs")  # noqa: E741
R = TypeVar("R", bound=Record)


class StageInputs(BaseModel):
    """A stage's inputs: upstream records, models and indices, JSON-serialisable (they cross process
    and host boundaries with the shard flow). Every field is part of the stage's key."""

    model_config = ConfigDict(frozen=True)


class NoInputs(StageInputs):
    """For stages that read only the config and user files (the seed set, the real images)."""


class Progress(Protocol):
    def __call__(self, done: int, total: int, metrics: dict[str, float] | None = None) -> None: ...


def no_progress(done: int, total: int, metrics: dict[str, float] | None = None) -> None:
    return None


def use_threads(threads: int | None) -> None:
    """Pin PyTorch's CPU threads (and those of processes started from here, e.g. multi-process training)."""
    if threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if threads is not None:
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)


def resolve_device(wanted: str) -> torch.device:
    if wanted == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(wanted)


@dataclass
class StageContext:
    """What a stage's work function is given: the run's config and layout, its own output directory,
    a progress callback, and (for sharded stages) the shards this call should compute."""

    config: SailConfig
    layout: RunLayout
    out_dir: Path
    progress: Progress = no_progress
    shards: Sequence[int] | None = None
    """None: every shard, and finish the stage. A list: only those shards (a shard worker)."""
    store: RunStore | None = None
    """The remote store of the run, when it has one (:mod:`sail_core.io.remote`)."""

    def publish(self, paths: Sequence[Path], prune: Path | None = None) -> None:
        """Make finished parts of the work (a shard's files, a step checkpoint) durable beyond this host
        now, so that another host resumes from them if this one dies; ``prune``: a directory whose other
        files the store forgets (older step checkpoints). Nothing to do for a run on local disk."""
        if self.store is None or not self.store.remote:
            return
        self.store.push(paths)
        if prune is not None:
            kept = {self.store.rel(f) for p in paths for f in ([p] if p.is_file() else p.rglob("*"))}
            self.store.forget([rel for rel in self.store.listing(self.store.rel(prune)) if rel not in kept])

    @property
    def device(self) -> torch.device:
        return resolve_device(self.config.runtime.device)

    @cached_property
    def bundle(self) -> ModelBundle:
        """The frozen parts (scheduler, codec, text encoders), loaded once per process and config."""
        from sail_core.models.bundle import cached_bundle

        return cached_bundle(self.config.model, self.device)

    def wanted_shards(self, n_shards: int) -> Sequence[int]:
        return range(n_shards) if self.shards is None else self.shards


def round_group(round_index: int) -> str:
    return f"round-{round_index:02d}"


def stage_label(stage: str, group: str) -> str:
    """The stage and its group, each said once: ``seed``, ``export``, ``evaluate-base``, ``train-round-00``
    (a group whose first word abbreviates the stage's name, like ``eval-`` or ``seed``, drops that word)."""
    first, _, rest = group.partition("-")
    if stage.startswith(first):
        return f"{stage}-{rest}" if rest else stage
    return f"{stage}-{group}"


def shards_of(n_items: int, per_shard: int) -> int:
    return math.ceil(n_items / per_shard)


@dataclass(frozen=True)
class Stage(Generic[I, R]):
    """The declaration of one stage (see the module docstring)."""

    name: str
    inputs: type[I]
    record: type[R]
    run: Callable[[StageContext, I], R | None]
    """The work: writes into ``ctx.out_dir``, resumes from what an interrupted call left there, and
    returns the record (None when only some shards were asked for)."""
    group: Callable[[I], str]
    """Where in the run the stage belongs: ``seed``, ``real``, ``round-01``, ``eval-<label>``."""
    settings: Callable[[SailConfig, I], dict[str, Any]]
    """The config sections that change the stage's output."""
    external: Callable[[SailConfig, I], Sequence[str]] = lambda config, inputs: ()
    """Fingerprints of user files the stage reads (``keys.file_fingerprint``, or a content digest)."""
    code: tuple[str, ...] = ()
    """Modules whose code computes the stage, besides the one ``run`` is defined in."""
    shard_count: Callable[[SailConfig, I], int] | None = None
    """Sharded stages (generation, ranking): how many shards, which shard workers may split."""
    reads: Callable[[StageContext, I], Iterable[str | Path]] | None = None
    """Run files the work reads besides its inputs' artifacts and models (which every stage gets):
    files that tables list (the latents of a pair table), or the parts of its own directory a shard
    run resumes from. Called with the inputs' artifacts present; only a run with a remote store asks."""
    description: str = ""
    modules: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "modules", (self.run.__module__, *self.code))


class ProgressCounter:
    """Counts units of work (images, UNet passes) towards a total and reports to a :class:`Progress`."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total, self.done, self.progress = total, 0, progress

    def advance(self, count: int) -> None:
        self.done += count
        self.progress(self.done, self.total)
