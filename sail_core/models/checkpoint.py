"""Which UNet weights a model of a run is made of.

Every round of a run produces a model. In full fine-tuning that is a complete UNet weights file; in
LoRA training it is one more adapter stacked on the previous round's adapters. A
:class:`UnetCheckpoint` names those files relative to the run directory, so round ``i`` can be
rebuilt from the base model plus its lineage, and any earlier model of the lineage (the base, the
iteration-0 model, the previous model) is a *prefix* of it: with LoRA the policy and every
reference are views of one UNet, never a second copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from sail_core.io.atomic import write_text


class UnetCheckpoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["base", "full", "lora"] = "base"
    weights: str | None = None
    """Full fine-tuning: the UNet safetensors file (relative to the run directory)."""
    adapters: tuple[str, ...] = ()
    """LoRA: adapter safetensors files, oldest first (relative to the run directory)."""
    label: str = "base"

    def is_prefix_of(self, other: UnetCheckpoint) -> bool:
        """True when ``self`` is ``other`` minus zero or more of its newest adapters."""
        if self.kind == "base":
            return other.kind in ("base", "lora")
        if self.kind == "lora" and other.kind == "lora":
            return other.adapters[: len(self.adapters)] == self.adapters
        return self == other

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        return write_text(path, self.model_dump_json(indent=2), overwrite=overwrite)

    @staticmethod
    def load(path: str | Path) -> UnetCheckpoint:
        return UnetCheckpoint.model_validate(json.loads(Path(path).read_text()))


BASE = UnetCheckpoint()
