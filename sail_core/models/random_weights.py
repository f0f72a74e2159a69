"""Write a published architecture with seeded random weights as an ordinary diffusers/transformers folder.

The folder has the layout and the published configuration files of the real model (``published/``),
safetensors weights and the real CLIP BPE vocabulary, so ``load_bundle`` loads it exactly like a
downloaded model (``model.source=<folder>``, ``model.local_files_only=true``). Only the weights'
values are made up, which is what running and measuring the real architectures needs.

Speed: nothing is initialised the usual way. Each component is built on the meta device (shapes
only), and each weight tensor is drawn from its own generator, seeded by (seed, architecture,
component, tensor name), directly in the output dtype, and streamed into the safetensors file
while the next tensors are drawn on other threads. Memory stays at a few tensors, and the files
depend only on the seed and dtype, never on the thread count or the order of work.

Values: linear and convolution weights ~ N(0, 1/fan_in) (activations keep their scale through the
network), embeddings ~ N(0, 0.02²), normalisation weights 1, biases 0, CLIP's ``logit_scale`` its
configured initial value.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from sail_core.io.atomic import atomic_dir
from sail_core.models.architectures import Architecture, Component, architecture, build_component
from sail_core.models.tokenizer import write_clip_tokenizer_files
from sail_core.seeding import derive_seed

WeightDType = Literal["fp16", "fp32"]
_TORCH_DTYPES = {"fp16": torch.float16, "fp32": torch.float32}
_SAFETENSORS_DTYPES = {torch.float16: "F16", torch.float32: "F32"}
_NORMS = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.BatchNorm2d)
EMBEDDING_STD = 0.02
PROVENANCE_FILE = "random_weights.json"


@dataclass
class RandomModelReport:
    architecture: str
    folder: Path
    seed: int
    dtype: WeightDType
    parameters: dict[str, int] = field(default_factory=dict)
    bytes_written: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    fill: Callable[[torch.Tensor, torch.Generator], None]


def _init_rule(module: torch.nn.Module, local_name: str, shape: tuple[int, ...],
               logit_scale: float | None) -> Callable[[torch.Tensor, torch.Generator], None]:
    if local_name == "logit_scale":
        value = logit_scale if logit_scale is not None else 0.0
        return lambda t, g: t.fill_(value)
    if isinstance(module, _NORMS):
        value = 1.0 if local_name == "weight" else 0.0
        return lambda t, g: t.fill_(value)
    if local_name == "bias":
        return lambda t, g: t.zero_()
    if isinstance(module, torch.nn.Embedding) or len(shape) < 2:
        return lambda t, g: t.normal_(0.0, EMBEDDING_STD, generator=g)
    fan_in = 1
    for side in shape[1:]:
        fan_in *= side
    std = fan_in ** -0.5
    return lambda t, g: t.normal_(0.0, std, generator=g)


def _tensors(model: torch.nn.Module) -> list[_Tensor]:
    """Every tensor of the model's state dict with how to fill it (the model lives on the meta device)."""
    logit_scale = getattr(model.config, "logit_scale_init_value", None) if hasattr(model, "config") else None
    params = dict(model.named_parameters())
    state = model.state_dict()
    buffers = [name for name in state if name not in params]
    if buffers:  # none of the published architectures persists a buffer; a new one must not go unnoticed
        raise ValueError(f"{type(model).__name__} persists buffers {buffers[:3]}: no random rule for them")
    modules = dict(model.named_modules())
    out = []
    for name, param in params.items():
        owner, _, local = name.rpartition(".")
        shape = tuple(param.shape)
        out.append(_Tensor(name, shape, _init_rule(modules[owner], local, shape, logit_scale)))
    return out


def _header(tensors: list[_Tensor], dtype: torch.dtype) -> bytes:
    """The safetensors header: little-endian u64 length, then JSON padded with spaces to 8 bytes."""
    item = torch.empty((), dtype=dtype).element_size()
    entries: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for tensor in tensors:
        size = item
        for side in tensor.shape:
            size *= side
        entries[tensor.name] = {"dtype": _SAFETENSORS_DTYPES[dtype], "shape": list(tensor.shape),
                                "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def _drawn(tensors: list[_Tensor], dtype: torch.dtype, seed_parts: tuple[object, ...],
           threads: int) -> Iterator[torch.Tensor]:
    """The tensors' values in order, drawn ``threads`` at a time ahead of the consumer."""

    def draw(tensor: _Tensor) -> torch.Tensor:
        out = torch.empty(tensor.shape, dtype=dtype)
        tensor.fill(out, torch.Generator().manual_seed(derive_seed(*seed_parts, tensor.name)))
        return out

    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[torch.Tensor]] = deque()
        for tensor in tensors:
            pending.append(pool.submit(draw, tensor))
            if len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_random_safetensors(model: torch.nn.Module, path: Path, dtype: torch.dtype,
                             seed_parts: tuple[object, ...], threads: int = 1) -> int:
    """Stream seeded random values for every tensor of ``model`` (a meta-device module) into a
    safetensors file at ``path``; return the bytes written."""
    tensors = sorted(_tensors(model), key=lambda t: t.name)
    written = 0
    with open(path, "wb") as handle:
        written += handle.write(_header(tensors, dtype))
        for values in _drawn(tensors, dtype, seed_parts, threads):
            written += handle.write(memoryview(values.numpy()).cast("B"))
    return written


def _copy_published(arch: Architecture, component: Component, folder: Path) -> None:
    target = component.path(folder)
    target.mkdir(parents=True, exist_ok=True)
    for name in component.config_files:
        shutil.copyfile(component.path(arch.published) / name, target / name)


def _write_model_index(arch: Architecture, folder: Path) -> None:
    index = json.loads((arch.published / "model_index.json").read_text())
    if "safety_checker" in index:
        # as diffusers saves a pipeline built with safety_checker=None: no checker, no feature extractor
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def write_component(arch: Architecture, component: Component, folder: Path, *, seed: int, dtype: torch.dtype,
                    threads: int = 1) -> tuple[int, int]:
    """One component into ``folder`` (the model's root): its published files, the CLIP vocabulary for a
    tokenizer, random weights for a model. Returns (parameters, bytes of weights written)."""
    _copy_published(arch, component, folder)
    target = component.path(folder)
    if component.kind == "tokenizer":
        write_clip_tokenizer_files(target)
    if not component.has_weights:
        return 0, 0
    model = build_component(component, arch.published, "meta")
    written = write_random_safetensors(model, target / component.weights_file(), dtype,
                                       ("random-weights", arch.name, seed, component.subfolder), threads)
    return sum(p.numel() for p in model.parameters()), written


def write_random_model(
    name: str,
    out: str | Path,
    *,
    seed: int = 0,
    dtype: WeightDType = "fp16",
    overwrite: bool = False,
    threads: int | None = None,
) -> RandomModelReport:
    """Write architecture ``name`` (``sail_core.models.architectures.ARCHITECTURES``) with random
    weights into the folder ``out``, atomically (a half-written folder never appears there)."""
    arch = architecture(name)
    if dtype not in _TORCH_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_TORCH_DTYPES)}, got {dtype!r}")
    report = RandomModelReport(arch.name, Path(out), seed, dtype)
    started = time.perf_counter()
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for component in arch.components:
            count, written = write_component(arch, component, tmp, seed=seed, dtype=_TORCH_DTYPES[dtype],
                                             threads=threads or torch.get_num_threads())
            if component.has_weights:
                report.parameters[component.subfolder or arch.name] = count
                report.bytes_written += written
        if arch.model_index:
            _write_model_index(arch, tmp)
        (tmp / PROVENANCE_FILE).write_text(json.dumps({
            "architecture": arch.name, "published": f"{arch.hub_id}@{arch.revision}", "seed": seed,
            "dtype": dtype, "note": "random weights: the published architecture, not the published model",
        }, indent=2) + "\n")
    report.seconds = time.perf_counter() - started
    return report
