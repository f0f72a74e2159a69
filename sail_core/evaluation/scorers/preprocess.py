"""Image preprocessing of the reference scorers, reproduced without torchvision.

torchvision cannot be installed next to the CPU torch wheel here, so the two torchvision pipelines
the references use are rewritten with PIL and torch, operation for operation, so that the pixels
(and the float32 rounding) are the same:

* ``resize_center_crop``: ``Compose([Resize(n, BICUBIC), CenterCrop(n), ToTensor(), Normalize])`` on
  a PIL image. Used by OpenAI CLIP's ``_transform`` (the LAION aesthetic predictor's CLIP) and by
  ImageReward's ``_transform`` (ImageReward/ImageReward.py).
* ``resize_longest_pad``: HPSv2's ``preprocess_val`` (hpsv2/src/open_clip/transform.py,
  ``image_transform(..., resize_longest_max=True)`` as ``create_model_and_transforms`` builds it
  with ``light_augmentation=True``): ``ToTensor`` first, then an antialiased bicubic resize of the
  float tensor so the longest side is n (torchvision>=0.17 default ``antialias=True``), zero padding
  to n x n, then ``Normalize``.

The equality with torchvision is checked in tests/evaluation against pixels stored from the
reference environment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_tensor(image: Image.Image) -> torch.Tensor:
    """torchvision ``ToTensor`` for an RGB image: uint8 HWC -> float32 CHW in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous().to(torch.float32).div(255)


def normalize(tensor: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    mean_t = torch.as_tensor(mean, dtype=tensor.dtype).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=tensor.dtype).view(-1, 1, 1)
    return tensor.sub(mean_t).div(std_t)


def _shortest_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    # torchvision truncates the long side (int()), it does not round.
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def resize_center_crop(
    image: Image.Image, size: int, mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD
) -> torch.Tensor:
    """Normalised float32 [3, size, size] from an RGB PIL image (see the module docstring)."""
    new_w, new_h = _shortest_side_size(image.width, image.height, size)
    if (new_w, new_h) != (image.width, image.height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    # torchvision's centre offset uses Python's round() (half to even), kept for exact crops.
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return normalize(to_tensor(image), mean, std)


def resize_longest_pad(
    image: Image.Image, size: int, mean: Sequence[float] = OPENAI_CLIP_MEAN, std: Sequence[float] = OPENAI_CLIP_STD
) -> torch.Tensor:
    """HPSv2's validation transform: normalised float32 [3, size, size] (see the module docstring).

    One deliberate difference: when the longest side is already ``size`` but the image is not
    square, the reference skips padding and hands a non-square tensor to the ViT, which fails;
    here it is padded like every other image.
    """
    tensor = to_tensor(image)
    height, width = tensor.shape[1:]
    scale = size / float(max(height, width))
    if scale != 1.0:
        new_h, new_w = (round(dim * scale) for dim in (height, width))
        tensor = F.interpolate(
            tensor.unsqueeze(0), size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        ).squeeze(0)
    pad_h, pad_w = size - tensor.shape[1], size - tensor.shape[2]
    if pad_h or pad_w:
        tensor = F.pad(tensor, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0)
    return normalize(tensor, mean, std)


def stack(images: Sequence[Image.Image], transform, size: int) -> torch.Tensor:
    return torch.stack([transform(image, size) for image in images])
