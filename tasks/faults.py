"""Fault injection, to exercise failure and resume in tests (never part of a cache key, never a parameter).

The fault comes from the environment variable ``SAIL_FAULT`` of the process that runs the stage, so no
deployment exposes it in its run form: tests set it on their process, on a worker, or on one
deployment run (``prefect deployment run ... --job-variable env='{"SAIL_FAULT": "..."}'``), and the
loop hands it on to the shard runs it starts.

``"<stage>:<group>"`` (e.g. ``"rank:round-01"``) makes that stage raise :class:`InjectedFault` when it
starts; ``"<stage>:<group>:<n>"`` kills the whole process (SIGKILL, as the OOM killer would) once the
stage has reported ``n`` units of progress; ``"<stage>:<group>:<n>@<label>"`` only in the shard run
of that label (one host of several dies).
"""

from __future__ import annotations

import os

FAULT_ENV = "SAIL_FAULT"


class InjectedFault(RuntimeError):
    """Raised on purpose by ``check_fault``."""


def injected_fault() -> str | None:
    return os.environ.get(FAULT_ENV) or None


def check_fault(stage: str, group: str) -> None:
    if injected_fault() == f"{stage}:{group}":
        raise InjectedFault(f"fault injected into {stage} of {group}")


def kill_after(stage: str, group: str, label: str | None = None) -> int | None:
    """Progress count after which this process is to be killed, if a kill fault targets the stage (and,
    with ``@<label>``, this shard run)."""
    spec, _, target = (injected_fault() or "").partition("@")
    parts = spec.split(":")
    if len(parts) == 3 and parts[:2] == [stage, group] and (target or None) == (label if target else None):
        return int(parts[2])
    return None
