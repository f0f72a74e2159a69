"""Measured anchors a plan leans on: utilisation (MFU) of each kind of work and peak memory of DPO steps.

**None of these was measured by this project** (no GPU has run its code yet). They come from one
measurement of plain diffusers on one H100, kept in the repository
(``bench/results/h100-eager-unet-anchor.jsonl``): plain diffusers 0.42.1 + torch 2.11, eager bf16 on one NVIDIA H100
80GB HBM3, random weights of the real SD1.5 (512²) and SDXL (1024²) UNets, SDPA attention; the DPO
step is a policy in float32 with fused AdamW, a bf16 reference, autocast bf16, one micro-batch a step,
``torch.cuda.max_memory_allocated`` as the peak. Utilisation here is the hardware FLOPs the step
executes (the checkpointing re-forward included) over the 989 TFLOP/s dense bf16 peak: the same count
``sail plan`` makes on the traced step, so time = counted FLOPs / (peak × MFU).
"""

from __future__ import annotations

from dataclasses import dataclass

ANCHOR_SOURCE = "bench/results/h100-eager-unet-anchor.jsonl: plain diffusers eager bf16 on one H100"
H100_PEAK = 989.0


@dataclass(frozen=True)
class MfuAnchor:
    family: str
    work: str
    """``forward`` (no-grad UNet forwards: sampling, ranking) or ``dpo`` (a Diffusion-DPO step)."""
    batch: int
    """UNet batch (images) for ``forward``; pairs per micro-batch for ``dpo``."""
    tflops: float
    """Achieved TFLOP/s as measured (hardware FLOPs: the re-forward of checkpointing included)."""
    checkpointing: bool = False

    @property
    def mfu(self) -> float:
        return self.tflops / H100_PEAK

    def describe(self) -> str:
        what = (f"{self.family} eager bf16 forward, batch {self.batch}" if self.work == "forward" else
                f"{self.family} DPO step, {self.batch} pair(s), checkpointing {'on' if self.checkpointing else 'off'}")
        return f"{what}, H100 anchor"


MFU_ANCHORS: tuple[MfuAnchor, ...] = (
    MfuAnchor("sd15", "forward", 1, 29.8), MfuAnchor("sd15", "forward", 8, 108.7),
    MfuAnchor("sd15", "forward", 32, 264.0),
    MfuAnchor("sdxl", "forward", 1, 117.0), MfuAnchor("sdxl", "forward", 8, 363.5),
    MfuAnchor("sdxl", "forward", 32, 385.6),
    MfuAnchor("sd15", "dpo", 1, 37.0), MfuAnchor("sd15", "dpo", 4, 139.4), MfuAnchor("sd15", "dpo", 8, 193.1),
    MfuAnchor("sd15", "dpo", 1, 24.3, True), MfuAnchor("sd15", "dpo", 4, 92.8, True),
    MfuAnchor("sd15", "dpo", 8, 165.6, True),
    MfuAnchor("sdxl", "dpo", 1, 132.8),
    MfuAnchor("sdxl", "dpo", 1, 98.3, True), MfuAnchor("sdxl", "dpo", 4, 278.2, True),
    MfuAnchor("sdxl", "dpo", 8, 324.9, True),
)


def mfu_anchor(family: str, work: str, batch: int, checkpointing: bool = False) -> MfuAnchor:
    """The anchor of this family and kind of work nearest in batch (log scale; ties: the smaller batch,
    the cautious side): utilisation grows with batch until the GPU is full."""
    import math

    rows = [a for a in MFU_ANCHORS if a.family == family and a.work == work
            and (work != "dpo" or a.checkpointing == checkpointing)]
    if not rows:
        raise KeyError(f"no MFU anchor for {family} {work}")
    return min(rows, key=lambda a: (abs(math.log(a.batch) - math.log(max(batch, 1))), a.batch))


@dataclass(frozen=True)
class MemoryAnchor:
    family: str
    pairs: int
    checkpointing: bool
    peak_gib: float
    """``torch.cuda.max_memory_allocated`` over the timed DPO steps (policy fp32 + fused AdamW, bf16 reference)."""


MEMORY_ANCHORS: tuple[MemoryAnchor, ...] = (
    MemoryAnchor("sd15", 1, False, 15.4), MemoryAnchor("sd15", 4, False, 22.8), MemoryAnchor("sd15", 8, False, 32.5),
    MemoryAnchor("sd15", 1, True, 14.9), MemoryAnchor("sd15", 4, True, 15.7), MemoryAnchor("sd15", 8, True, 16.8),
    MemoryAnchor("sdxl", 1, False, 55.3),
    MemoryAnchor("sdxl", 1, True, 44.0), MemoryAnchor("sdxl", 4, True, 46.2), MemoryAnchor("sdxl", 8, True, 51.9),
)
"""The DPO peaks of the same field-note measurement (SDXL at 4 and 8 pairs without checkpointing ran out of
memory on the 80 GB H100)."""
