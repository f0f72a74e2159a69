"""The GPUs a plan can target: dense bf16 peak, memory and bandwidth, each from a public datasheet.

``peak_bf16_tflops`` is the dense (no 2:4 sparsity) bf16 tensor-core peak the vendor prints; MFU in a
plan is always relative to it. ``memory_gib`` is what the driver reports as the card's total
(``nvidia-smi --query-gpu=memory.total``, MiB / 1024: a little under the nominal GB, and it varies by a
few hundred MiB with driver and ECC settings); a plan's fit check compares estimates with it. Sources:

* H100 SXM5 80GB: NVIDIA H100 Tensor Core GPU datasheet (BF16 Tensor Core 1,979 TFLOPS *with
  sparsity*, so 989 dense; 80 GB HBM3; 3.35 TB/s).
* H200 SXM 141GB: NVIDIA H200 Tensor Core GPU datasheet (BF16 1,979 TFLOPS with sparsity, 989 dense;
  141 GB HBM3e; 4.8 TB/s).
* A100 SXM4 80GB: NVIDIA A100 Tensor Core GPU datasheet (BF16 312 TFLOPS dense, 624 with sparsity;
  80 GB HBM2e; 2,039 GB/s).
* L40S: NVIDIA L40S datasheet (BF16 362.05 TFLOPS dense, 733 with sparsity; 48 GB GDDR6; 864 GB/s).
* RTX 4090: NVIDIA Ada Lovelace GPU architecture whitepaper, appendix table (peak BF16 tensor TFLOPS
  with FP32 accumulate 165.2 dense, 330.4 with sparsity; 24 GB GDDR6X; 1,008 GB/s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sail_core.errors import InputError


@dataclass(frozen=True)
class Gpu:
    name: str
    peak_bf16_tflops: float
    """Dense bf16 tensor-core peak, TFLOP/s (datasheet)."""
    memory_gib: float
    """Total device memory as the driver reports it, GiB."""
    bandwidth_tb_s: float
    """Peak memory bandwidth, TB/s (datasheet)."""
    source: str
    aliases: tuple[str, ...] = ()

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 2**30)


GPUS: tuple[Gpu, ...] = (
    Gpu("H100 80GB", 989.0, 81559 / 1024, 3.35, "NVIDIA H100 Tensor Core GPU datasheet (SXM5)",
        ("H100", "H100-80GB", "H100 SXM", "H100-SXM")),
    Gpu("H200", 989.0, 143771 / 1024, 4.8, "NVIDIA H200 Tensor Core GPU datasheet (SXM)",
        ("H200-141GB", "H200 SXM")),
    Gpu("A100 80GB", 312.0, 81920 / 1024, 2.039, "NVIDIA A100 Tensor Core GPU datasheet (SXM4 80GB)",
        ("A100", "A100-80GB", "A100 SXM")),
    Gpu("L40S", 362.05, 46068 / 1024, 0.864, "NVIDIA L40S datasheet", ()),
    Gpu("RTX 4090", 165.2, 24564 / 1024, 1.008,
        "NVIDIA Ada Lovelace GPU architecture whitepaper (GeForce RTX 4090)", ("4090", "RTX4090", "GeForce RTX 4090")),
)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def known_gpus() -> list[str]:
    return [g.name for g in GPUS]


def gpu(name: str) -> Gpu:
    """The GPU called ``name`` (case, spaces and dashes ignored; ``H100``, ``a100-80gb`` ...)."""
    key = _key(name)
    for g in GPUS:
        if key in {_key(n) for n in (g.name, *g.aliases)}:
            return g
    raise InputError(f"unknown GPU {name!r}; known: {', '.join(known_gpus())}", parameter="--gpu")


def detect(device_name: str, total_memory_bytes: int) -> Gpu:
    """The table's entry for a CUDA device's name (``torch.cuda.get_device_name``), with the memory the
    device reports; a device not in the table keeps its memory and gets no peak (0)."""
    words = set(re.split(r"[\s\-_]+", device_name.upper()))
    for g in GPUS:
        if {w.upper() for w in re.split(r"[\s\-_]+", g.name)} <= words | {"80GB"}:
            return Gpu(g.name, g.peak_bf16_tflops, total_memory_bytes / 2**30, g.bandwidth_tb_s, g.source, g.aliases)
    return Gpu(device_name, 0.0, total_memory_bytes / 2**30, 0.0, "reported by the device")
