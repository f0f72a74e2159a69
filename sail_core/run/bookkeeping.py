"""The record of a finished stage, kept beside its directory, and the check that it still holds.

``<group>/<stage>-<key>/`` holds a stage's data; ``<group>/<stage>-<key>.json`` (written last)
holds its record, the settings that made it and the hash of the whole directory. A stage is
finished exactly when that file exists and the directory still has that hash: a file deleted or
changed since makes the stage run again instead of being trusted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from sail_core.io.atomic import write_text
from sail_core.io.remote import RunStore
from sail_core.run.keys import StageKey
from sail_core.run.layout import Artifact, RunLayout

R = TypeVar("R", bound=BaseModel)


def stage_dir(layout: RunLayout, key: StageKey) -> Path:
    return layout.stage_dir(key.group, key.stage, key.key)


def sidecar(layout: RunLayout, key: StageKey) -> Path:
    return stage_dir(layout, key).with_suffix(".json")


def record_finished(layout: RunLayout, key: StageKey, record: BaseModel) -> dict[str, Any]:
    entry = {
        "stage": key.stage, "group": key.group, "key": key.key, "settings": key.settings,
        "inputs": list(key.inputs), "code": key.code, "record_type": type(record).__name__,
        "record": record.model_dump(mode="json"),
        "data": Artifact.of(layout.root, stage_dir(layout, key)).model_dump(),
    }
    write_text(sidecar(layout, key), json.dumps(entry, indent=2), overwrite=True)
    return entry


def read_entry(data: bytes | str) -> dict[str, Any] | None:
    """A stage record's entry, or None when its bytes are damaged (not JSON, or not a record): such a
    stage is set aside and recomputed, never a crash on every later run."""
    try:
        entry = json.loads(data)
        Artifact.model_validate(entry["data"])
        return entry
    except (ValueError, KeyError, TypeError):  # JSONDecodeError and ValidationError are ValueErrors
        return None


def _intact_entry(layout: RunLayout, key: StageKey) -> dict[str, Any] | None:
    path = sidecar(layout, key)
    if not path.exists():
        return None
    entry = read_entry(path.read_bytes())
    return entry if entry is not None and Artifact.model_validate(entry["data"]).verify(layout.root) else None


def is_finished(layout: RunLayout, key: StageKey) -> bool:
    """The stage finished and its data is still exactly what it wrote."""
    return _intact_entry(layout, key) is not None


def finished_record(layout: RunLayout, key: StageKey, record_type: type[R]) -> R | None:
    """The stage's record if it finished and its data is intact, else None."""
    entry = _intact_entry(layout, key)
    return None if entry is None else record_type.model_validate(entry["record"])


def set_aside_if_changed(layout: RunLayout, key: StageKey) -> Path | None:
    """A stage that finished but whose data no longer has its recorded hash cannot be partly trusted
    (which of its files are still right is unknown): move its directory and record aside, intact, so
    the stage recomputes from nothing. An unfinished stage (no record) keeps its partial work."""
    record = sidecar(layout, key)
    if not record.exists() or is_finished(layout, key):
        return None
    return set_aside(layout, record)


CHANGED_DIR = ".changed"
"""Where stages whose files changed or were lost after they finished are moved (kept, never trusted)."""


def aside_rel(record: str | Path) -> str:
    """``.changed/<group>-<stage>-<key>-<time>`` for the stage whose record is ``<group>/<stage>-<key>.json``."""
    record = Path(record)
    return f"{CHANGED_DIR}/{record.parent.name}-{record.stem}-{time.time_ns()}"


def set_aside(layout: RunLayout, record: Path) -> Path:
    """Move a finished stage's directory and record (``record``: its path) to ``.changed/``, so that it
    recomputes from nothing; returns where they went."""
    aside = layout.root / aside_rel(record)
    aside.mkdir(parents=True)
    if record.with_suffix("").exists():
        os.replace(record.with_suffix(""), aside / "data")
    if record.exists():
        os.replace(record, aside / "record.json")
    return aside


def set_aside_in_store(store: RunStore, layout: RunLayout, record_rel: str) -> str:
    """:func:`set_aside` for a run with a remote store: the stage's pointers move there (the objects stay),
    and its directory in the working copy, if any, moves here; returns the store's location of it."""
    base, aside = record_rel.removesuffix(".json"), aside_rel(record_rel)
    held = [rel for rel in store.listing(base) if rel.startswith(base + "/")]
    store.move({**{rel: f"{aside}/data/{rel[len(base) + 1:]}" for rel in held},
                **({record_rel: f"{aside}/record.json"} if store.listing(record_rel) else {})})
    if (layout.root / base).exists():
        (layout.root / aside).mkdir(parents=True)
        os.replace(layout.root / base, layout.root / aside / "data")
    return f"{store.location}/{aside}"


def manifest(layout: RunLayout) -> list[dict[str, Any]]:
    """Every finished stage of the run: key, settings, inputs, record and data hash."""
    return [json.loads(p.read_text()) for p in sorted(layout.root.glob("*/*-*.json"))]
