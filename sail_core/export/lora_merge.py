"""A LoRA lineage (one adapter per round, stacked) merged exactly into one adapter.

A round's model is the base UNet plus every adapter of its lineage, each adding ``s_i · B_i A_i x``
to a target layer's output, with ``s_i = alpha_i / r_i``. The sum of those products is itself one
low-rank product: concatenating the rounds along the rank,

    A = cat(s_1 A_1, ..., s_n A_n)   (rows: rank)        B = cat(B_1, ..., B_n)   (columns: rank)

gives ``B A = Σ s_i B_i A_i`` with rank ``R = Σ r_i``. Its alpha is set to ``R``, so the scale is 1
and is baked into the weights: every loader (diffusers with or without adapter metadata, Kohya-style
loaders that read ``alpha``, a plain ``W + B A``) computes the same thing. This is a change of
parametrisation, not an approximation (an SVD truncation would be); the only difference from the
stacked adapters is the order of float additions.

A layer one round did not target gets zero rows/columns for that round, so every layer has rank R.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sail_core.config import LoraSettings
from sail_core.errors import InputError
from sail_core.io.tensors import read_metadata, read_tensors

LORA_A, LORA_B = ".lora_A.weight", ".lora_B.weight"


@dataclass(frozen=True)
class RoundAdapter:
    """One round's adapter as sail wrote it: ``<module>.lora_A.weight`` / ``.lora_B.weight`` tensors
    (module paths of the UNet) and the settings recorded in the file."""

    path: Path
    settings: LoraSettings
    tensors: dict[str, torch.Tensor]

    @property
    def scale(self) -> float:
        return self.settings.alpha / self.settings.rank

    def modules(self) -> list[str]:
        return sorted(k[: -len(LORA_A)] for k in self.tensors if k.endswith(LORA_A))


def read_round_adapter(path: str | Path) -> RoundAdapter:
    path = Path(path)
    if not path.is_file():
        raise InputError("the adapter file of this round is missing", file=path)
    meta = read_metadata(path)
    if "lora" not in meta:
        raise InputError("not a sail LoRA adapter file (no 'lora' metadata)", file=path)
    settings = LoraSettings.model_validate(json.loads(meta["lora"]))
    tensors = {k: v.float() for k, v in read_tensors(path).items()}
    other = [k for k in tensors if not k.endswith((LORA_A, LORA_B))]
    if other:
        raise InputError(f"unexpected tensors in a LoRA adapter file (DoRA or biases are not supported): "
                         f"{other[:3]}", file=path)
    for module in {k[: -len(LORA_A)] for k in tensors if k.endswith(LORA_A)}:
        a, b = tensors.get(module + LORA_A), tensors.get(module + LORA_B)
        if b is None or a.shape[0] != settings.rank or b.shape[1] != settings.rank:
            raise InputError(f"layer {module}: lora_A/lora_B missing or not of rank {settings.rank}", file=path)
    return RoundAdapter(path, settings, tensors)


@dataclass(frozen=True)
class MergedLora:
    """One adapter equal to a lineage: tensors named ``<module>.lora_A.weight`` / ``.lora_B.weight``."""

    tensors: dict[str, torch.Tensor]
    rank: int
    """Σ r_i; the alpha is the same number (scale 1)."""
    modules: tuple[str, ...]
    """The UNet layers it targets (full module paths)."""
    rounds: tuple[LoraSettings, ...]

    @property
    def alpha(self) -> float:
        return float(self.rank)

    def to(self, dtype: torch.dtype) -> MergedLora:
        return MergedLora({k: v.to(dtype) for k, v in self.tensors.items()}, self.rank, self.modules, self.rounds)


def merge_adapters(adapters: Sequence[RoundAdapter]) -> MergedLora:
    """The exact merge of the stacked ``adapters`` (oldest first), in float32."""
    if not adapters:
        raise ValueError("a LoRA lineage needs at least one adapter")
    modules = sorted({m for adapter in adapters for m in adapter.modules()})
    rank = sum(a.settings.rank for a in adapters)
    tensors: dict[str, torch.Tensor] = {}
    for module in modules:
        shapes = [(a.tensors[module + LORA_A], a.tensors[module + LORA_B]) for a in adapters
                  if module + LORA_A in a.tensors]
        a_shape, b_shape = shapes[0][0].shape, shapes[0][1].shape
        parts_a, parts_b = [], []
        for adapter in adapters:
            r = adapter.settings.rank
            if module + LORA_A in adapter.tensors:
                parts_a.append(adapter.scale * adapter.tensors[module + LORA_A])
                parts_b.append(adapter.tensors[module + LORA_B])
            else:  # this round left the layer alone: a zero block of its rank keeps the merged rank uniform
                parts_a.append(torch.zeros((r, *a_shape[1:])))
                parts_b.append(torch.zeros((b_shape[0], r, *b_shape[2:])))
        tensors[module + LORA_A] = torch.cat(parts_a, dim=0).contiguous()
        tensors[module + LORA_B] = torch.cat(parts_b, dim=1).contiguous()
    return MergedLora(tensors, rank, tuple(modules), tuple(a.settings for a in adapters))


def merge_lineage(paths: Sequence[str | Path]) -> MergedLora:
    """Read a lineage's adapter files (oldest first) and merge them."""
    return merge_adapters([read_round_adapter(p) for p in paths])


def delta_weight(merged: MergedLora, module: str) -> torch.Tensor:
    """``B A`` of one layer (Linear layers: [out, in]), what the adapter adds to its weight."""
    a, b = merged.tensors[module + LORA_A], merged.tensors[module + LORA_B]
    return (b.flatten(1) @ a.flatten(1)).reshape(b.shape[0], *a.shape[1:])
