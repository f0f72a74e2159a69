"""What every task receives: the run directory, the configuration and fault-injection switches."""

from __future__ import annotations

from functools import cached_property

import torch
from pydantic import BaseModel, ConfigDict

from sail_core.config import SailConfig
from sail_core.models.bundle import ModelBundle, cached_bundle
from sail_core.stages.layout import RunLayout


class InjectedFault(RuntimeError):
    """Raised on purpose by ``RunContext.fault`` to exercise failure and resume."""


class RunContext(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True, ignored_types=(cached_property,))

    run_dir: str
    config: SailConfig
    fault: str | None = None
    """Fault injection for tests, never part of a cache key (a rerun without it finds every earlier
    task cached): ``"<stage>:<group>"`` (e.g. ``"rank:round-01"``) makes that task raise
    :class:`InjectedFault` at its start; ``"<stage>:<group>:<n>"`` kills the whole process (SIGKILL,
    as the OOM killer would) once the stage has reported ``n`` units of progress."""

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.run_dir)

    @property
    def device(self) -> torch.device:
        wanted = self.config.runtime.device
        if wanted == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(wanted)

    def bundle(self) -> ModelBundle:
        return cached_bundle(self.config.model, self.device)

    def check_fault(self, stage: str, group: str) -> None:
        if self.fault == f"{stage}:{group}":
            raise InjectedFault(f"fault injected into {stage} of {group}")

    def kill_after(self, stage: str, group: str) -> int | None:
        """Progress count after which this process is to be killed, if a kill fault targets the stage."""
        parts = (self.fault or "").split(":")
        if len(parts) == 3 and parts[:2] == [stage, group]:
            return int(parts[2])
        return None
