"""Conversions between encoded images, PIL images and model tensors in [-1, 1]."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sail_core.errors import InputError


def decode_image(data: bytes, *, file: str | Path | None = None, row: int | None = None,
                 column: str | None = None) -> Image.Image:
    """Decode JPEG/PNG/WebP bytes to RGB; an undecodable image names its file, row and column."""
    if not data:
        raise InputError("empty image bytes", file=file, row=row, column=column)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise InputError(f"image does not decode ({exc})", file=file, row=row, column=column) from exc
    return image.convert("RGB")


def encode_png(image: Image.Image | np.ndarray) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def resize_center_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Shorter side to ``resolution`` (bicubic), then a centred square crop: the Diffusion-DPO preprocessing."""
    width, height = image.size
    scale = resolution / min(width, height)
    if scale != 1.0:
        image = image.resize((max(resolution, round(width * scale)), max(resolution, round(height * scale))),
                             Image.Resampling.BICUBIC)
    width, height = image.size
    left, top = (width - resolution) // 2, (height - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def pil_to_tensor(images: Sequence[Image.Image], resolution: int) -> torch.Tensor:
    """RGB images → float tensor [B, 3, R, R] in [-1, 1]."""
    arrays = [np.asarray(resize_center_crop(im.convert("RGB"), resolution), dtype=np.float32) for im in images]
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return batch / 127.5 - 1.0


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float tensor [B, 3, H, W] in [-1, 1] → uint8 array [B, H, W, 3]."""
    scaled = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(a) for a in tensor_to_uint8(images)]


def image_grid(images: Sequence[np.ndarray], columns: int, pad: int = 1, scale: int = 1) -> np.ndarray:
    """Tile equally sized uint8 [H, W, 3] images into one array (white padding), optionally upscaled."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    height, width, _ = images[0].shape
    rows = -(-len(images) // columns)
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, 3), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = image
    if scale > 1:
        grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid
