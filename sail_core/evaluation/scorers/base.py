"""The scorer interface, input validation, and the device/precision policy every scorer shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from sail_core.errors import InputError


@runtime_checkable
class ImageScorer(Protocol):
    """Scores (image, prompt) pairs. ``score`` returns one float64 array of len(images) per metric."""

    name: str
    metrics: tuple[str, ...]

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, np.ndarray]: ...


def check_inputs(images: Sequence[Image.Image], prompts: Sequence[str] | None) -> list[Image.Image]:
    """RGB copies of ``images``; rejects what no scorer can score, naming the offending index.

    Conversion to RGB happens here, before any resize, for every scorer: the references resize
    the image in whatever mode it arrived in, which only matters for palette images (and makes
    their RGBA inputs crash HPSv2); see the scorers' docstrings.
    """
    if isinstance(images, (Image.Image, str, bytes)):
        raise InputError("images must be a sequence of PIL images, not a single item", parameter="images")
    if len(images) == 0:
        raise InputError("empty batch: no images to score", parameter="images")
    if prompts is not None:
        if isinstance(prompts, str):
            raise InputError("prompts must be a sequence of strings, not one string", parameter="prompts")
        if len(prompts) != len(images):
            raise InputError(f"{len(images)} images but {len(prompts)} prompts; they pair one to one",
                             parameter="prompts")
        for row, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise InputError(f"prompt is a {type(prompt).__name__}, not a string", row=row, parameter="prompts")
    rgb = []
    for row, image in enumerate(images):
        if not isinstance(image, Image.Image):
            raise InputError(f"not a PIL image: {type(image).__name__}", row=row, parameter="images")
        if image.width < 1 or image.height < 1:
            raise InputError(f"image has no pixels ({image.width}x{image.height})", row=row, parameter="images")
        try:
            rgb.append(image.convert("RGB"))
        except (ValueError, OSError) as exc:
            raise InputError(f"image of mode {image.mode!r} cannot be converted to RGB ({exc})",
                             row=row, parameter="images") from exc
    return rgb


@dataclass(frozen=True)
class Runtime:
    """Where a scorer runs and in which precision.

    Weights stay float32; a lower ``dtype`` is applied through autocast on CUDA, which is what
    the HPSv2 reference does (``torch.cuda.amp.autocast``) and keeps LayerNorm/softmax in float32.
    On the CPU everything runs in float32 whatever was asked, because CPU half precision is slow and
    would change scores for no benefit.
    """

    device: torch.device
    dtype: torch.dtype

    @staticmethod
    def resolve(device: torch.device | str, dtype: torch.dtype | None, cuda_default: torch.dtype) -> Runtime:
        device = torch.device(device)
        if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise InputError(f"unsupported dtype {dtype}; use float32, float16 or bfloat16", parameter="dtype")
        if device.type != "cuda":
            return Runtime(device, torch.float32)
        return Runtime(device, dtype or cuda_default)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.device.type == "cuda" and self.dtype != torch.float32:
            return torch.autocast("cuda", dtype=self.dtype)
        return contextlib.nullcontext()


def run_batched(
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    batch_size: int,
    score_batch: Callable[[Sequence[Image.Image], Sequence[str]], torch.Tensor],
) -> np.ndarray:
    """Concatenates ``score_batch`` over batches as float64 (scores are computed in float32)."""
    out = []
    for start in range(0, len(images), batch_size):
        values = score_batch(images[start : start + batch_size], prompts[start : start + batch_size])
        out.append(values.detach().float().cpu().numpy().astype(np.float64).reshape(-1))
    return np.concatenate(out)


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}", parameter="batch_size")
    return batch_size
