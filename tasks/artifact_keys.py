"""Keys of the Prefect artifacts a run publishes (lowercase letters, digits and dashes), one set per run."""

from __future__ import annotations

import hashlib

from sail_core.run.stage import stage_label


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def run_key(run_name: str) -> str:
    """The run's part of an artifact key: the run name itself when it is a valid key already, else its
    slug and a digest of the name, so that two distinct runs never share a key."""
    key = slug(run_name)
    return key if key == run_name else f"{key}-{hashlib.sha256(run_name.encode()).hexdigest()[:6]}"


def progress_key(run_name: str, stage: str, group: str, part: str = "") -> str:
    """One progress artifact per run and stage (and shard run): two runs never update each other's.
    ``progress-<run>-train-round-00``, ``progress-<run>-generate-round-01-shard-1``."""
    return "-".join(filter(None, ["progress", run_key(run_name), stage_label(stage, group), part]))
