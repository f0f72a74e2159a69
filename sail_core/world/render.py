"""Scenes, the "web data" distribution of scenes for a prompt, and rendering.

``sample_scene`` plays the role of the internet: for a caption it returns a plausible picture.
Stated attributes are honoured (drawn inside the ranges of ``layout``), unsaid ones are broad, and
capture nuisances (background noise, blur) are random and never mentioned by any caption, so a
model trained on this data produces them at random too and preference learning can remove them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sail_core.errors import InputError
from sail_core.world.grammar import (
    BACKGROUNDS,
    COLOURS,
    POSITIONS,
    SHAPES,
    PromptSpec,
    UnsaidProbabilities,
    as_spec,
    sample_specs,
)
from sail_core.world.layout import (
    BACKGROUND_ARRAY,
    BACKGROUND_INDEX,
    CANVAS,
    CANVAS_CENTRE,
    CENTRE_HALF_WIDTH,
    COLOUR_INDEX,
    EXTENT_DOWN,
    EXTENT_SIDE,
    EXTENT_UP,
    OBJECT_GAP,
    PALETTE_ARRAY,
    POSITION_HIGH_MIN,
    POSITION_LOW_MAX,
    SHAPE_INDEX,
    size_range,
)
from sail_core.world.raster import SceneArrays, rasterise

# Capture nuisances of the web data (never stated in prompts).
NOISE_STD_RANGE = (0.0, 0.15)  # Gaussian background noise std, [0, 1] units, drawn uniformly
P_BLUR = 0.5  # probability that an image is blurred at all
BLUR_SIGMA_RANGE = (0.4, 1.0)  # Gaussian blur sigma in pixels when blurred, drawn uniformly
OBJECT_JITTER = 12.0  # uniform +- jitter per channel (0-255) around the palette colour
BACKGROUND_JITTER = 8.0  # uniform +- jitter per channel around the named background
# Stated positions are drawn this far inside the judge's regions, so that the analyser's
# sub-pixel centroid error does not turn honest web data into "unfaithful" data.
POSITION_MARGIN = 0.25
MAX_OBJECTS = 2
_MAX_PLACEMENT_ROUNDS = 500


@dataclass(frozen=True)
class SceneObject:
    """One object: its shape, its colour name and actual (jittered) RGB, centroid and size in pixels."""

    shape: str
    colour: str
    rgb: tuple[int, int, int]
    x: float
    y: float
    size: float

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise InputError(f"{self.shape!r} is not one of {list(SHAPES)}", parameter="shape")
        if self.colour not in COLOURS:
            raise InputError(f"{self.colour!r} is not one of {list(COLOURS)}", parameter="colour")
        if not self.size > 0:
            raise InputError(f"size must be positive, got {self.size!r}", parameter="size")


@dataclass(frozen=True)
class Scene:
    """A picture before rendering: background, objects, and capture quality.

    ``noise_std`` is the background noise std in [0, 1] units of full scale, ``blur_sigma`` the
    Gaussian blur in pixels (0 = sharp), ``noise_seed`` fixes the noise pattern so that ``render``
    is a pure function of the scene.
    """

    background: str
    background_rgb: tuple[int, int, int]
    objects: tuple[SceneObject, ...]
    noise_std: float = 0.0
    blur_sigma: float = 0.0
    noise_seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.objects, tuple):  # accept any sequence, keep the scene immutable
            object.__setattr__(self, "objects", tuple(self.objects))
        for i, obj in enumerate(self.objects):
            if not isinstance(obj, SceneObject):
                raise InputError(f"expected a SceneObject, got {type(obj).__name__}", parameter=f"objects[{i}]")
        if self.background not in BACKGROUNDS:
            raise InputError(f"{self.background!r} is not one of {list(BACKGROUNDS)}", parameter="background")
        if len(self.objects) > MAX_OBJECTS:
            raise InputError(f"at most {MAX_OBJECTS} objects, got {len(self.objects)}", parameter="objects")
        if not 0.0 <= self.noise_std <= 1.0:
            raise InputError(f"noise_std must be in [0, 1], got {self.noise_std!r}", parameter="noise_std")
        if not self.blur_sigma >= 0.0:
            raise InputError(f"blur_sigma must be >= 0, got {self.blur_sigma!r}", parameter="blur_sigma")
        if not 0 <= self.noise_seed < 2**64:
            raise InputError(f"noise_seed must be in [0, 2**64), got {self.noise_seed!r}", parameter="noise_seed")


# ----------------------------------------------------------------------------------------------
# Sampling (vectorised over a batch of specs)


def _spec_codes(specs: Sequence[PromptSpec]) -> dict[str, np.ndarray]:
    def code(values: list[str | None], index: dict[str, int]) -> np.ndarray:
        return np.array([-1 if v is None else index[v] for v in values], dtype=np.int64)

    sizes = [size_range(s.size, s.count) for s in specs]
    return {
        "colour": np.array([COLOUR_INDEX[s.colour] for s in specs], dtype=np.int64),
        "shape": np.array([SHAPE_INDEX[s.shape] for s in specs], dtype=np.int64),
        "count": np.array([s.count for s in specs], dtype=np.int64),
        "position": code([s.position for s in specs], {p: i for i, p in enumerate(POSITIONS)}),
        "background": code([s.background for s in specs], BACKGROUND_INDEX),
        "size_lo": np.array([lo for lo, _ in sizes], dtype=np.float64),
        "size_hi": np.array([hi for _, hi in sizes], dtype=np.float64),
    }


def _bounds(shape: np.ndarray, size: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-object centroid box (xlo, xhi, ylo, yhi): on the canvas and inside a stated left/right/top/bottom.

    ``shape``, ``size`` are [n, K], ``position`` is [n] (-1 unsaid). 'centre' is handled by the
    caller: for one object it is a box, for two a constraint on the group centroid.
    """
    xlo = size * EXTENT_SIDE[shape]
    xhi = CANVAS - size * EXTENT_SIDE[shape]
    ylo = size * EXTENT_UP[shape]
    yhi = CANVAS - size * EXTENT_DOWN[shape]
    pos = position[:, None]
    left, right, top, bottom = (POSITIONS.index(p) for p in ("left", "right", "top", "bottom"))
    xhi = np.where(pos == left, np.minimum(xhi, POSITION_LOW_MAX - POSITION_MARGIN), xhi)
    xlo = np.where(pos == right, np.maximum(xlo, POSITION_HIGH_MIN + POSITION_MARGIN), xlo)
    yhi = np.where(pos == top, np.minimum(yhi, POSITION_LOW_MAX - POSITION_MARGIN), yhi)
    ylo = np.where(pos == bottom, np.maximum(ylo, POSITION_HIGH_MIN + POSITION_MARGIN), ylo)
    return xlo, xhi, ylo, yhi


def _uniform(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + rng.random(np.shape(lo)) * np.maximum(hi - lo, 0.0)


def _place_single(
    rng: np.random.Generator,
    shape: np.ndarray,
    size: np.ndarray,
    position: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
) -> None:
    """Place the object of each single-object scene in ``rows`` (writes x[rows, 0], y[rows, 0])."""
    centre = POSITIONS.index("centre")
    xlo, xhi, ylo, yhi = (b[:, 0] for b in _bounds(shape[rows], size[rows], position[rows]))
    half = CENTRE_HALF_WIDTH - POSITION_MARGIN
    is_centre = position[rows] == centre
    xlo = np.where(is_centre, np.maximum(xlo, CANVAS_CENTRE - half), xlo)
    xhi = np.where(is_centre, np.minimum(xhi, CANVAS_CENTRE + half), xhi)
    ylo = np.where(is_centre, np.maximum(ylo, CANVAS_CENTRE - half), ylo)
    yhi = np.where(is_centre, np.minimum(yhi, CANVAS_CENTRE + half), yhi)
    x[rows, 0] = _uniform(rng, xlo, xhi)
    y[rows, 0] = _uniform(rng, ylo, yhi)


def _place_pairs(
    rng: np.random.Generator,
    shape: np.ndarray,
    size: np.ndarray,
    position: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    rows: np.ndarray,
) -> None:
    """Place two objects with a clear gap of OBJECT_GAP pixels along x or along y.

    Proposal: pick the separating axis (forced to y when both must share the left or right band,
    to x for top/bottom), draw the first object's coordinate along it so the second can still fit,
    the second beyond the gap, and the other axis freely; reject only proposals that violate a
    'centre' (group centroid) constraint. Rejection rounds are vectorised over the pending rows.
    """
    centre = POSITIONS.index("centre")
    forced_y = np.isin(position, [POSITIONS.index("left"), POSITIONS.index("right")])
    forced_x = np.isin(position, [POSITIONS.index("top"), POSITIONS.index("bottom")])
    half = CENTRE_HALF_WIDTH - POSITION_MARGIN
    pending = np.asarray(rows)
    for _ in range(_MAX_PLACEMENT_ROUNDS):
        if pending.size == 0:
            return
        sh, sz, pos = shape[pending], size[pending], position[pending]
        xlo, xhi, ylo, yhi = _bounds(sh, sz, pos)
        along_x = np.where(forced_x[pending], True, np.where(forced_y[pending], False, rng.random(pending.size) < 0.5))
        ax = along_x[:, None]
        lo = np.where(ax, xlo, ylo)
        hi = np.where(ax, xhi, yhi)
        olo = np.where(ax, ylo, xlo)
        ohi = np.where(ax, yhi, xhi)
        # Extent of the first object towards the second, and of the second towards the first.
        first_ext = np.where(along_x, sz[:, 0] * EXTENT_SIDE[sh[:, 0]], sz[:, 0] * EXTENT_DOWN[sh[:, 0]])
        second_ext = np.where(along_x, sz[:, 1] * EXTENT_SIDE[sh[:, 1]], sz[:, 1] * EXTENT_UP[sh[:, 1]])
        need = first_ext + second_ext + OBJECT_GAP
        p1_hi = np.minimum(hi[:, 0], hi[:, 1] - need)
        feasible = p1_hi >= lo[:, 0] - 1e-9
        p1 = _uniform(rng, lo[:, 0], p1_hi)
        p2 = _uniform(rng, np.maximum(lo[:, 1], p1 + need), hi[:, 1])
        q = _uniform(rng, olo, ohi)
        px = np.where(along_x, p1, q[:, 0]), np.where(along_x, p2, q[:, 1])
        py = np.where(along_x, q[:, 0], p1), np.where(along_x, q[:, 1], p2)
        gx = 0.5 * (px[0] + px[1])
        gy = 0.5 * (py[0] + py[1])
        centred = (np.abs(gx - CANVAS_CENTRE) <= half) & (np.abs(gy - CANVAS_CENTRE) <= half)
        ok = feasible & ((pos != centre) | centred)
        done = pending[ok]
        x[done, 0], x[done, 1] = px[0][ok], px[1][ok]
        y[done, 0], y[done, 1] = py[0][ok], py[1][ok]
        pending = pending[~ok]
    raise RuntimeError(f"could not place two objects for {pending.size} scenes after {_MAX_PLACEMENT_ROUNDS} rounds")


def sample_scene_arrays(specs: Sequence[PromptSpec], rng: np.random.Generator) -> tuple[SceneArrays, np.ndarray]:
    """The web-data scene distribution for each spec, as arrays (the fast path), and the index of
    each scene's named background (in BACKGROUNDS)."""
    n = len(specs)
    c = _spec_codes(specs)
    k = MAX_OBJECTS
    background_index = np.where(c["background"] >= 0, c["background"], rng.integers(0, len(BACKGROUNDS), n))
    background = BACKGROUND_ARRAY[background_index] + rng.uniform(-BACKGROUND_JITTER, BACKGROUND_JITTER, (n, 3))
    rgb = PALETTE_ARRAY[c["colour"]][:, None, :] + rng.uniform(-OBJECT_JITTER, OBJECT_JITTER, (n, k, 3))
    shape = np.repeat(c["shape"][:, None], k, axis=1)
    size = c["size_lo"][:, None] + rng.random((n, k)) * (c["size_hi"] - c["size_lo"])[:, None]
    valid = np.arange(k)[None, :] < c["count"][:, None]
    noise_std = rng.uniform(*NOISE_STD_RANGE, n)
    blurred = rng.random(n) < P_BLUR
    blur_sigma = np.where(blurred, rng.uniform(*BLUR_SIGMA_RANGE, n), 0.0)
    noise_seed = rng.integers(0, 2**64, n, dtype=np.uint64)
    x = np.zeros((n, k))
    y = np.zeros((n, k))
    singles = np.flatnonzero(c["count"] == 1)
    pairs = np.flatnonzero(c["count"] == 2)
    _place_single(rng, shape, size, c["position"], x, y, singles)
    _place_pairs(rng, shape, size, c["position"], x, y, pairs)
    return SceneArrays(
        background=np.clip(np.rint(background), 0, 255),
        shape=shape,
        rgb=np.clip(np.rint(rgb), 0, 255),
        x=x,
        y=y,
        size=size,
        valid=valid,
        noise_std=noise_std,
        blur_sigma=blur_sigma,
        noise_seed=noise_seed,
    ), background_index


def _to_scenes(arrays: SceneArrays, backgrounds: Sequence[str], colours: Sequence[str]) -> list[Scene]:
    scenes = []
    for i in range(len(arrays)):
        objects = tuple(
            SceneObject(
                shape=SHAPES[int(arrays.shape[i, j])],
                colour=colours[i],
                rgb=tuple(int(v) for v in arrays.rgb[i, j]),
                x=float(arrays.x[i, j]),
                y=float(arrays.y[i, j]),
                size=float(arrays.size[i, j]),
            )
            for j in range(arrays.valid.shape[1])
            if arrays.valid[i, j]
        )
        scenes.append(
            Scene(
                background=backgrounds[i],
                background_rgb=tuple(int(v) for v in arrays.background[i]),
                objects=objects,
                noise_std=float(arrays.noise_std[i]),
                blur_sigma=float(arrays.blur_sigma[i]),
                noise_seed=int(arrays.noise_seed[i]),
            )
        )
    return scenes


def sample_scenes(specs: Sequence[PromptSpec | str], rng: np.random.Generator) -> list[Scene]:
    """One web-data scene per spec (or prompt text).

    The batch is drawn attribute by attribute (all sizes, then all positions, ...), so scene i
    depends on the whole batch and its rng state, not on i alone; reproduce it with the same specs
    and seed.
    """
    specs = [as_spec(s) for s in specs]
    arrays, background_index = sample_scene_arrays(specs, rng)
    return _to_scenes(arrays, [BACKGROUNDS[i] for i in background_index], [s.colour for s in specs])


def sample_scene(spec: PromptSpec | str, rng: np.random.Generator) -> Scene:
    """One web-data scene; identical to ``sample_scenes([spec], rng)[0]``."""
    return sample_scenes([spec], rng)[0]


# ----------------------------------------------------------------------------------------------
# Rendering


def scenes_to_arrays(scenes: Sequence[Scene]) -> SceneArrays:
    """Pack Scene objects for the vectorised rasteriser."""
    n = len(scenes)
    k = MAX_OBJECTS
    shape = np.zeros((n, k), np.int64)
    rgb = np.zeros((n, k, 3))
    x = np.zeros((n, k))
    y = np.zeros((n, k))
    size = np.zeros((n, k))
    valid = np.zeros((n, k), bool)
    for i, scene in enumerate(scenes):
        if not isinstance(scene, Scene):
            raise InputError(f"expected a Scene, got {type(scene).__name__}", parameter=f"scenes[{i}]")
        for j, obj in enumerate(scene.objects):
            shape[i, j] = SHAPE_INDEX[obj.shape]
            rgb[i, j] = obj.rgb
            x[i, j], y[i, j], size[i, j] = obj.x, obj.y, obj.size
            valid[i, j] = True
    return SceneArrays(
        background=np.array([s.background_rgb for s in scenes], np.float64).reshape(n, 3),
        shape=shape,
        rgb=rgb,
        x=x,
        y=y,
        size=size,
        valid=valid,
        noise_std=np.array([s.noise_std for s in scenes], np.float64),
        blur_sigma=np.array([s.blur_sigma for s in scenes], np.float64),
        noise_seed=np.array([s.noise_seed for s in scenes], np.uint64),
    )


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise InputError(f"size must be a positive integer, got {size!r}", parameter="size")
    return int(size)


def render_batch(scenes: Sequence[Scene], size: int = CANVAS) -> np.ndarray:
    """uint8 [n, size, size, 3]; geometry and blur scale with size / CANVAS (for previews)."""
    return rasterise(scenes_to_arrays(scenes), _check_size(size))


def render(scene: Scene, size: int = CANVAS) -> np.ndarray:
    """uint8 [size, size, 3]; a pure function of the scene."""
    return render_batch([scene], size)[0]


def sample_images(specs: Sequence[PromptSpec | str], rng: np.random.Generator, size: int = CANVAS) -> np.ndarray:
    """One web-data image per prompt, uint8 [n, size, size, 3], without building Scene objects.

    Equal to ``render_batch(sample_scenes(specs, rng), size)`` for the same rng state.
    """
    specs = [as_spec(s) for s in specs]
    return rasterise(sample_scene_arrays(specs, rng)[0], _check_size(size))


def sample_batch(
    rng: np.random.Generator,
    n: int,
    p_unsaid: UnsaidProbabilities | float = UnsaidProbabilities(),
    size: int = CANVAS,
) -> tuple[list[str], np.ndarray]:
    """``n`` (prompt, web image) training pairs: prompts from ``sample_specs``, images from the web distribution."""
    specs = sample_specs(rng, n, p_unsaid)
    return [s.text() for s in specs], sample_images(specs, rng, size)
