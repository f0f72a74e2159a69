"""Hand-made scenes for the world tests."""

from __future__ import annotations

from sail_core.world.layout import BACKGROUND_RGB, PALETTE
from sail_core.world.render import Scene, SceneObject


def scene(
    objects: list[tuple[str, str, float, float, float]],
    background: str = "black",
    noise: float = 0.0,
    blur: float = 0.0,
    seed: int = 1,
) -> Scene:
    """A scene from (shape, colour, x, y, size) tuples, with exact palette colours."""
    return Scene(
        background=background,
        background_rgb=BACKGROUND_RGB[background],
        objects=tuple(SceneObject(s, c, PALETTE[c], x, y, z) for s, c, x, y, z in objects),
        noise_std=noise,
        blur_sigma=blur,
        noise_seed=seed,
    )
