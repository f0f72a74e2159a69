"""Vectorised rasterisation: anti-aliased shape coverage, per-image Gaussian blur, seeded noise.

Everything works on whole batches of struct-of-arrays scenes, because a training loop renders
hundreds of thousands of 16x16 images on two CPU cores and per-image Python overhead would
dominate. The shape coverage function is also the analyser's template generator, so the judge and
the renderer agree on what "a circle of size 6" looks like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sail_core.world.layout import CANVAS

_SQRT5 = np.sqrt(5.0)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


def coverage(
    shape: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    size: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
) -> np.ndarray:
    """Fraction of each pixel covered by each shape, from a signed distance with a 1 px ramp.

    ``shape``, ``x``, ``y``, ``size`` broadcast together to a batch shape B; ``xs`` [W] and ``ys``
    [H] are pixel-centre coordinates. Returns float32 [*B, H, W]. Shape codes follow SHAPES
    (0 circle, 1 square, 2 upright triangle); (x, y) is the centroid.
    """
    shape, x, y, size = np.broadcast_arrays(
        np.asarray(shape), np.asarray(x, np.float32), np.asarray(y, np.float32), np.asarray(size, np.float32)
    )
    dx = xs.astype(np.float32)[None, :] - x[..., None, None]  # [*B, 1, W]
    dy = ys.astype(np.float32)[:, None] - y[..., None, None]  # [*B, H, 1]
    s = size[..., None, None]
    adx = np.abs(dx)
    circle = np.sqrt(dx * dx + dy * dy) - 0.5 * s
    square = np.maximum(adx, np.abs(dy)) - 0.5 * s
    triangle = np.maximum(dy - s / 3.0, (2.0 * adx - dy - (2.0 / 3.0) * s) / _SQRT5)
    code = shape[..., None, None]
    sd = np.where(code == 0, circle, np.where(code == 1, square, triangle))
    return np.clip(0.5 - sd, 0.0, 1.0).astype(np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    """Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); numpy has no erf and scipy is not a dependency."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def gaussian_taps(sigma: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Blur weights [*sigma.shape, *offsets.shape]: a Gaussian integrated over each pixel, normalised.

    Integrating over the pixel (rather than sampling at its centre) keeps the blur a smooth
    function of sigma down to 0, so a blur of 0.2 px is visibly different from none and the
    analyser can measure small blurs. sigma <= 0 gives the identity.
    """
    offsets = np.asarray(offsets, np.float64)
    sigma = np.asarray(sigma, np.float64)
    sigma = sigma.reshape(sigma.shape + (1,) * offsets.ndim)
    safe = np.where(sigma > 0, sigma, 1.0) * np.sqrt(2.0)
    taps = 0.5 * (_erf((offsets + 0.5) / safe) - _erf((offsets - 0.5) / safe))
    taps = np.where(sigma > 0, taps, (offsets == 0).astype(np.float64))
    return taps / taps.sum(axis=-1, keepdims=True)


def blur_batch(images: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of [n, H, W, C] with one sigma (pixels) per image; edges replicate.

    Replicating the edge (rather than padding with zeros) keeps a uniform background uniform, as a
    defocused photograph of a larger uniform wall would be.
    """
    sigma = np.asarray(sigma, np.float64)
    out = images.copy()
    todo = np.flatnonzero(sigma > 0)
    if todo.size == 0:
        return out
    radius = max(1, int(np.ceil(3.0 * float(sigma[todo].max()))))
    taps = gaussian_taps(sigma[todo], np.arange(-radius, radius + 1)).astype(np.float32)  # [m, k]
    sub = images[todo]
    _, h, w, _ = sub.shape
    padded = np.pad(sub, ((0, 0), (radius, radius), (0, 0), (0, 0)), mode="edge")
    rows = np.zeros_like(sub)
    for k in range(2 * radius + 1):
        rows += taps[:, k, None, None, None] * padded[:, k : k + h]
    padded = np.pad(rows, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode="edge")
    cols = np.zeros_like(sub)
    for k in range(2 * radius + 1):
        cols += taps[:, k, None, None, None] * padded[:, :, k : k + w]
    out[todo] = cols
    return out


def _splitmix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def seeded_normals(seeds: np.ndarray, count: int) -> np.ndarray:
    """Standard normals [n, count], a pure function of each 64-bit seed (counter-based hashing).

    A scene carries a noise seed rather than a noise field, so a Scene stays small and ``render``
    stays a pure function; hashing (splitmix64 + Box-Muller) makes one image's noise independent of
    which batch it is rendered in, and is ~4x cheaper than building a Generator per image.
    """
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1, 1)
    pairs = (count + 1) // 2
    counter = np.arange(1, pairs + 1, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        z = _splitmix(_splitmix(seeds) + counter * _GOLDEN)
    # Two 24-bit uniforms per hash; Box-Muller turns each pair into two independent normals.
    u1 = ((z >> np.uint64(40)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)
    u2 = (((z >> np.uint64(16)) & np.uint64(0xFFFFFF)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)
    radius = np.sqrt(np.float32(-2.0) * np.log(u1))
    angle = np.float32(2.0 * np.pi) * u2
    normals = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return normals[:, :count]


@dataclass(frozen=True)
class SceneArrays:
    """A batch of scenes as arrays (K = objects per scene, unused slots have valid=False).

    Colours are 0-255 floats, geometry in pixels of a CANVAS-sized canvas, noise_std in [0, 1]
    units of full scale.
    """

    background: np.ndarray  # [n, 3]
    shape: np.ndarray  # [n, K] int
    rgb: np.ndarray  # [n, K, 3]
    x: np.ndarray  # [n, K]
    y: np.ndarray  # [n, K]
    size: np.ndarray  # [n, K]
    valid: np.ndarray  # [n, K] bool
    noise_std: np.ndarray  # [n]
    blur_sigma: np.ndarray  # [n]
    noise_seed: np.ndarray  # [n] uint64

    def __len__(self) -> int:
        return int(self.background.shape[0])


def rasterise(scenes: SceneArrays, size: int = CANVAS) -> np.ndarray:
    """Render a batch to uint8 [n, size, size, 3].

    Order of effects follows a camera: objects are composited over the background, the optics blur
    everything, then sensor noise is added where the (blurred) background shows, scaled to a
    ``size``-pixel image (geometry and blur scale with size / CANVAS).
    """
    scale = size / CANVAS
    centres = np.arange(size, dtype=np.float32) + 0.5
    alpha = coverage(scenes.shape, scenes.x * scale, scenes.y * scale, scenes.size * scale, centres, centres)
    alpha *= scenes.valid[..., None, None]
    rgb = np.broadcast_to(scenes.background.astype(np.float32)[:, None, None, :], alpha.shape[:1] + (size, size, 3))
    covered = np.zeros(alpha.shape[:1] + (size, size, 1), np.float32)
    for k in range(alpha.shape[1]):
        a = alpha[:, k, :, :, None]
        rgb = rgb + a * (scenes.rgb[:, k, None, None, :].astype(np.float32) - rgb)
        covered = covered + a * (1.0 - covered)
    planes = blur_batch(np.concatenate([rgb, covered], axis=-1), np.asarray(scenes.blur_sigma) * scale)
    amplitude = (255.0 * np.asarray(scenes.noise_std, np.float32))[:, None, None, None]
    normals = seeded_normals(scenes.noise_seed, size * size * 3).reshape(-1, size, size, 3)
    out = planes[..., :3] + amplitude * normals * (1.0 - planes[..., 3:])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
