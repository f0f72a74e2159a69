"""``sail verify``: walk a run and check every byte a stage could read against its recorded hash.

A run on local disk: every stage record (its directory's hash) and every step checkpoint (its
``sha256.json``). A run in a store (``s3://...``): every pointer's object (downloaded and hashed, each
object once), every record against the pointers it covers, every step checkpoint's ``sha256.json``
against its files' pointers. With ``repair``, what can be fixed is: an object is replaced from a good
copy on this host (its verified cache, or the working copy of the host that wrote it); a stage with
no good copy of its files is set aside (``.changed/``), so the next run recomputes it; a damaged step
checkpoint is set aside (``steps/damaged/``), so training resumes from an older one. Parts already
set aside (``.changed/``, ``steps/damaged/``, ``steps/diverged/``) are not the run's any more and are
not checked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sail_core.errors import InputError
from sail_core.io.atomic import tree_digest
from sail_core.io.remote import FileRef, RunStore, is_url
from sail_core.run.bookkeeping import read_entry, set_aside, set_aside_in_store
from sail_core.run.layout import Artifact, RunLayout
from sail_core.training.step_checkpoints import (
    DAMAGED_DIR,
    DIVERGED_DIR,
    HASHES_FILE,
    STEP_PREFIX,
    checkpoint_problem,
    set_aside_damaged,
    step_checkpoint_dirs,
)

_ASIDE = (".changed", DAMAGED_DIR, DIVERGED_DIR)


@dataclass(frozen=True)
class Problem:
    """One damaged thing: where it is, what is wrong, and what ``repair`` did about it (None: nothing)."""

    where: str
    what: str
    repaired: str | None = None

    def line(self) -> str:
        return f"{self.where}: {self.what}" + (f"; repaired: {self.repaired}" if self.repaired else "")


@dataclass
class Report:
    problems: list[Problem]
    records: int = 0
    files: int = 0
    checkpoints: int = 0

    def summary(self) -> str:
        checked = f"{self.records} stage records, {self.files} files, {self.checkpoints} step checkpoints"
        if not self.problems:
            return f"intact: {checked}"
        repaired = sum(p.repaired is not None for p in self.problems)
        return f"{len(self.problems)} problem(s), {repaired} repaired: {checked}"


def _set_aside(rel: str) -> bool:
    return any(part.startswith(".") or part in _ASIDE for part in Path(rel).parts)


_RECORD = re.compile(r"[a-z_]+-[0-9a-f]{8}\.json")
"""``<stage>-<key>.json``: a stage's record, beside its directory in its group."""


def _is_record(rel: str) -> bool:
    parts = Path(rel).parts
    return len(parts) == 2 and bool(_RECORD.fullmatch(parts[1])) and not _set_aside(rel)


def verify_run(location: str, repair: bool = False) -> Report:
    """Check (and with ``repair`` fix) the run at ``location``: a directory or a store URL."""
    return _verify_store(RunStore(location), repair) if is_url(location) else _verify_local(Path(location), repair)


# ---------------------------------------------------------------------------------------- a local run


def _verify_local(root: Path, repair: bool) -> Report:
    layout, report = RunLayout(root), Report([])
    for record in sorted(root.glob("*/*.json")):
        rel = layout.rel(record)
        if not _is_record(rel):
            continue
        report.records += 1
        entry = read_entry(record.read_bytes())
        if entry is None:
            done = f"set aside in {set_aside(layout, record)}; the next run recomputes the stage" if repair else None
            report.problems.append(Problem(str(record), "the record is damaged (not a readable stage record)",
                                           done))
            continue
        recorded = Artifact.model_validate(entry["data"])
        report.files += sum(1 for f in recorded.resolve(root).rglob("*") if f.is_file()) \
            if recorded.resolve(root).is_dir() else 1
        if recorded.verify(root):
            continue
        what = ("its directory is missing" if not recorded.resolve(root).exists()
                else "its files do not have the hash recorded when the stage finished")
        done = f"set aside in {set_aside(layout, record)}; the next run recomputes the stage" if repair else None
        report.problems.append(Problem(str(record.with_suffix("")), what, done))
    for steps in sorted(root.glob("*/*/steps")):
        if _set_aside(layout.rel(steps)):
            continue
        for checkpoint in step_checkpoint_dirs(steps):
            report.checkpoints += 1
            problem = checkpoint_problem(checkpoint)
            if problem is not None:
                done = (f"set aside in {set_aside_damaged(checkpoint)}; training resumes from an older one"
                        if repair else None)
                report.problems.append(Problem(str(checkpoint), f"damaged step checkpoint: {problem}", done))
    return report


# ---------------------------------------------------------------------------------------- a run in a store


def _stage_record(rel: str) -> str | None:
    """The record of the stage whose directory holds ``rel`` (``<group>/<stage>-<key>/...``)."""
    parts = Path(rel).parts
    return f"{parts[0]}/{parts[1]}.json" if len(parts) >= 3 else (rel if _is_record(rel) else None)


def _step_of(rel: str) -> str | None:
    """The step checkpoint directory holding ``rel``, if it is in one."""
    parts = Path(rel).parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith(STEP_PREFIX) and i > 0 and parts[i - 1] == "steps":
            return "/".join(parts[: i + 1])
    return None


def _verify_store(store: RunStore, repair: bool) -> Report:
    report = Report([])
    layout = RunLayout(store.local)
    everything = store.listing("")
    if not everything:
        raise InputError("the store holds no run at this location", file=store.location)
    pointers = {rel: ref for rel, ref in everything.items() if not _set_aside(rel)}
    report.files = len(pointers)
    checked: dict[str, str | None] = {}
    broken: dict[str, FileRef] = {}
    for rel, ref in sorted(pointers.items()):
        if ref.sha256 not in checked:
            checked[ref.sha256] = store.stored_problem(ref, content=True)
        problem = checked[ref.sha256]
        if problem is None:
            continue
        done = None
        if repair:
            if problem.startswith("damaged"):
                store.remove_object(ref.sha256)
            if store.repair(rel, ref) is not None:
                done, checked[ref.sha256] = "replaced from a good copy on this host", None
        if done is None:
            broken[rel] = ref
        report.problems.append(Problem(f"{store.location}/{rel}", f"its object {store.object_url(ref.sha256)} is "
                                       f"{problem}", done))
    records = [rel for rel in pointers if _is_record(rel)]
    report.records = len(records)
    aside: set[str] = set()
    for record_rel in sorted(records):
        if record_rel in broken:
            continue  # already reported as a lost object
        entry = read_entry(store.read_bytes(record_rel))
        base = record_rel.removesuffix(".json")
        held = {rel[len(base) + 1:]: ref.sha256 for rel, ref in pointers.items() if rel.startswith(base + "/")}
        if entry is None or tree_digest(held) != Artifact.model_validate(entry["data"]).sha256:
            done = None
            if repair:
                aside.add(record_rel)
                done = f"set aside in {set_aside_in_store(store, layout, record_rel)}; the next run recomputes it"
            what = "its record is damaged" if entry is None else "its files are not the ones its record lists"
            report.problems.append(Problem(f"{store.location}/{base}", what, done))
    report.checkpoints, lost_steps = _verify_store_steps(store, pointers, report, repair)
    if repair:  # what no host could replace: the stage (or step checkpoint) that holds it is redone
        for rel in sorted(broken):
            step = _step_of(rel)
            if step is not None:
                if step not in lost_steps:
                    store.forget([r for r in pointers if r.startswith(step + "/")])
                    lost_steps.add(step)
                _mark(report, rel, "step checkpoint forgotten; training resumes from an older one or the start")
                continue
            record_rel = _stage_record(rel)
            if record_rel is None:  # a report or manifest: every run writes it again
                store.forget([rel])
                _mark(report, rel, "forgotten; the next run writes it again")
                continue
            if record_rel not in aside:
                aside.add(record_rel)
                set_aside_in_store(store, layout, record_rel)
            _mark(report, rel, "its stage was set aside; the next run recomputes it")
    return report


def _mark(report: Report, rel: str, done: str) -> None:
    for i, problem in enumerate(report.problems):
        if problem.where.endswith("/" + rel) and problem.repaired is None:
            report.problems[i] = Problem(problem.where, problem.what, done)


def _verify_store_steps(store: RunStore, pointers: dict[str, FileRef], report: Report,
                        repair: bool) -> tuple[int, set[str]]:
    """Each step checkpoint's ``sha256.json`` against the pointers of its files (their objects were
    checked with the others); a mismatched one is forgotten with ``repair``."""
    steps = sorted({step for rel in pointers if (step := _step_of(rel)) is not None})
    lost: set[str] = set()
    for step in steps:
        files = {rel[len(step) + 1:]: ref for rel, ref in pointers.items() if rel.startswith(step + "/")}
        problem = None
        if HASHES_FILE not in files:
            problem = f"{HASHES_FILE} is missing"
        else:
            try:
                recorded = json.loads(store.read_bytes(f"{step}/{HASHES_FILE}") or b"{}")
            except (OSError, ValueError):
                continue  # its object is lost: reported with the objects
            wrong = sorted(name for name, sha in recorded.items() if name not in files or files[name].sha256 != sha)
            problem = f"{', '.join(wrong)} missing or not the bytes it recorded" if wrong else None
        if problem is None:
            continue
        done = None
        if repair:
            store.forget([f"{step}/{name}" for name in files])
            lost.add(step)
            done = "forgotten; training resumes from an older one or the start"
        report.problems.append(Problem(f"{store.location}/{step}", f"damaged step checkpoint: {problem}", done))
    return len(steps), lost
