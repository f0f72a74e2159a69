"""Deterministic degradations of a real image: the rejected side of a real ≻ perturbed pair (RealAlign).

Each perturbation is a small pure function ``(image, strength, rng) -> image`` on an RGB PIL image;
the randomness it needs (noise, a shift direction) comes only from ``rng``, which
:func:`apply_perturbation` seeds from the caller's per-image seed, so a perturbed copy can be
recomputed exactly from (image, kind, strength, seed). Strength units are documented on
:class:`sail_core.config.PerturbationConfig`.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from sail_core.config import PerturbationConfig
from sail_core.errors import InputError

Perturbation = Callable[[Image.Image, float, np.random.Generator], Image.Image]


def _to_uint8(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "RGB")


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def blur(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Gaussian blur with sigma = ``strength`` pixels."""
    return image.convert("RGB").filter(ImageFilter.GaussianBlur(radius=strength))


def gaussian_noise(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Additive per-pixel, per-channel Gaussian noise of std ``strength`` (in [0, 1] intensity units)."""
    pixels = _pixels(image)
    return _to_uint8(pixels + rng.normal(0.0, strength * 255.0, pixels.shape))


def jpeg(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """JPEG round trip at quality round(100 · (1 − strength)), at least 1."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=max(1, round(100 * (1.0 - strength))))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def colour_shift(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """One RGB offset for the whole image: a random direction, length ``strength`` (intensity units)."""
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) or 1.0
    return _to_uint8(_pixels(image) + direction * strength * 255.0)


def downscale(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Down by the factor ``strength`` (box filter: an honest average), back up to the size (bicubic)."""
    image = image.convert("RGB")
    width, height = image.size
    small = image.resize((max(1, round(width / strength)), max(1, round(height / strength))),
                         Image.Resampling.BOX)
    return small.resize((width, height), Image.Resampling.BICUBIC)


def contrast(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    """Deviations from the image's mean grey level scaled by 1 − ``strength``."""
    pixels = _pixels(image)
    mean = pixels.mean()
    return _to_uint8(mean + (1.0 - strength) * (pixels - mean))


PERTURBATIONS: dict[str, Perturbation] = {
    "blur": blur,
    "noise": gaussian_noise,
    "jpeg": jpeg,
    "colour_shift": colour_shift,
    "downscale": downscale,
    "contrast": contrast,
}


def apply_perturbation(image: Image.Image, perturbation: PerturbationConfig, seed: int) -> Image.Image:
    """The perturbed copy of ``image``: a pure function of (image, kind, strength, seed)."""
    function = PERTURBATIONS.get(perturbation.kind)
    if function is None:
        raise InputError(f"unknown perturbation {perturbation.kind!r}; choose one of {sorted(PERTURBATIONS)}",
                         parameter="real.perturbations")
    return function(image, perturbation.strength, np.random.default_rng(seed))
