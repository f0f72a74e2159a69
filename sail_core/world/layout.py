"""What the words of the grammar mean in pixels: palette, sizes, positions and shape geometry.

These constants are shared by the scene sampler (which honours stated attributes by drawing inside
these ranges) and the hidden human (who checks the analysed image against them). Keeping them in
one place is what makes "stated attributes are honoured" and "the judge agrees" the same claim.

Coordinates are in pixels of a ``CANVAS`` x ``CANVAS`` image: x grows to the right, y grows
downwards, pixel (row i, column j) covers [j, j+1) x [i, i+1), so its centre is (j + 0.5, i + 0.5).
An object's (x, y) is its centroid (centre of mass); its size is the diameter of a circle, the side
of a square, and both the base and the height of an upright isosceles triangle.
"""

from __future__ import annotations

import numpy as np

from sail_core.world.grammar import BACKGROUNDS, COLOURS, SHAPES

CANVAS = 16

# Saturated object colours and achromatic backgrounds. Every colour is at least ~0.6 (in [0, 1] RGB
# units, Euclidean) from every background and ~0.55 from every other colour, so nearest-palette
# classification survives jitter, blur and moderate sampling noise at 16x16.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (235, 25, 25),
    "green": (20, 210, 20),
    "blue": (35, 65, 235),
    "yellow": (240, 225, 25),
    "magenta": (225, 30, 225),
    "cyan": (25, 215, 225),
}
BACKGROUND_RGB: dict[str, tuple[int, int, int]] = {
    "black": (15, 15, 15),
    "white": (240, 240, 240),
    "gray": (128, 128, 128),
}
PALETTE_ARRAY = np.array([PALETTE[c] for c in COLOURS], dtype=np.float64)  # [6, 3], order of COLOURS
BACKGROUND_ARRAY = np.array([BACKGROUND_RGB[b] for b in BACKGROUNDS], dtype=np.float64)  # [3, 3]

# Sizes (pixels). Stated sizes are drawn from these ranges; the judge calls an object small below
# SIZE_THRESHOLD and large at or above it, so each stated range sits >= 0.75 px from the threshold.
SMALL_RANGE = (3.0, 5.0)
LARGE_RANGE = (6.5, 10.0)
SIZE_THRESHOLD = 5.75
UNSAID_SIZE_RANGE = (3.0, 10.0)
# Two objects must fit side by side with a clear gap: 7 + 2 + 7 = 16. The gap keeps the two
# objects separate connected components even after a ~1 px blur.
TWO_OBJECT_MAX_SIZE = 7.0
OBJECT_GAP = 2.0

# Positions (pixels, on the object centroid). "left": x < POSITION_LOW_MAX, "right":
# x > POSITION_HIGH_MIN, "top"/"bottom" likewise on y. These hold for every object of the prompt.
# "centre": the group centroid (mean of object centroids) lies within CENTRE_HALF_WIDTH of the
# canvas centre on both axes; for two objects this describes the pair as a centred group, since two
# separated objects cannot both sit in a small central box. The thresholds are 1 px either side
# of the centre so that a 10 px triangle (centroid at least 6.67 px from its apex) can still be
# "at the top" while lying wholly on the canvas.
POSITION_LOW_MAX = 7.0
POSITION_HIGH_MIN = 9.0
CENTRE_HALF_WIDTH = 1.5
CANVAS_CENTRE = CANVAS / 2.0

SHAPE_INDEX: dict[str, int] = {s: i for i, s in enumerate(SHAPES)}
COLOUR_INDEX: dict[str, int] = {c: i for i, c in enumerate(COLOURS)}
BACKGROUND_INDEX: dict[str, int] = {b: i for i, b in enumerate(BACKGROUNDS)}

# Area per squared size, per shape in SHAPES order: circle pi/4, square 1, triangle 1/2.
AREA_FACTOR = np.array([np.pi / 4.0, 1.0, 0.5])
# Extent from the centroid per unit size, in SHAPES order (up, down, sideways). The triangle's apex
# is 2/3 of its height above its centroid and its base 1/3 below.
EXTENT_UP = np.array([0.5, 0.5, 2.0 / 3.0])
EXTENT_DOWN = np.array([0.5, 0.5, 1.0 / 3.0])
EXTENT_SIDE = np.array([0.5, 0.5, 0.5])
for _table in (PALETTE_ARRAY, BACKGROUND_ARRAY, AREA_FACTOR, EXTENT_UP, EXTENT_DOWN, EXTENT_SIDE):
    _table.flags.writeable = False  # shared constants: nobody may change the world's meaning in place
del _table


def size_range(size: str | None, count: int) -> tuple[float, float]:
    """The range a stated (or unsaid) size is drawn from, capped so that two objects fit."""
    if size is None:
        lo, hi = UNSAID_SIZE_RANGE
    elif size == "small":
        lo, hi = SMALL_RANGE
    else:
        lo, hi = LARGE_RANGE
    if count == 2:
        hi = min(hi, TWO_OBJECT_MAX_SIZE)
    return lo, hi


def size_from_area(area: float | np.ndarray, shape_index: int | np.ndarray) -> float | np.ndarray:
    """Invert AREA_FACTOR: the size of a shape with the given filled area."""
    return np.sqrt(np.maximum(area, 0.0) / AREA_FACTOR[shape_index])


def size_class(size: float) -> str:
    """'small' or 'large' as the judge sees it."""
    return "small" if size < SIZE_THRESHOLD else "large"


def in_position(position: str, x: float, y: float) -> bool:
    """Whether a single centroid (an object's, or for 'centre' the group's) is in the region."""
    if position == "left":
        return x < POSITION_LOW_MAX
    if position == "right":
        return x > POSITION_HIGH_MIN
    if position == "top":
        return y < POSITION_LOW_MAX
    if position == "bottom":
        return y > POSITION_HIGH_MIN
    if position == "centre":
        return abs(x - CANVAS_CENTRE) <= CENTRE_HALF_WIDTH and abs(y - CANVAS_CENTRE) <= CENTRE_HALF_WIDTH
    raise ValueError(f"unknown position {position!r}")


def max_size_for_count(count: int) -> float:
    """Largest size the web data ever draws for this many objects (the judge's 'as large as it gets')."""
    return TWO_OBJECT_MAX_SIZE if count == 2 else UNSAID_SIZE_RANGE[1]
