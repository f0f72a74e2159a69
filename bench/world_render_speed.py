"""How fast the embedded world renders its training images (CPU): milliseconds per image for batches of
``sample_batch``, beside the same images rendered one ``render`` call at a time (the baseline, measured in
the same run). Pretraining draws a fresh batch every step, so rendering must stay far below a step's time.

    python -m bench.world_render_speed [--images 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sail_core.world.render import render, sample_batch, sample_scenes


def per_image_ms(images: int) -> tuple[float, float]:
    """(batched, one at a time) milliseconds per image for ``images`` images."""
    rng = np.random.default_rng(0)
    sample_batch(rng, 256)  # warm-up: numpy's first calls allocate
    start = time.perf_counter()
    sample_batch(rng, images)
    batched = (time.perf_counter() - start) / images * 1e3
    scenes = sample_scenes(["a red circle"] * (images // 10), np.random.default_rng(1))
    start = time.perf_counter()
    for scene in scenes:
        render(scene)
    single = (time.perf_counter() - start) / len(scenes) * 1e3
    return batched, single


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args(argv)
    batched, single = per_image_ms(args.images)
    print(f"sample_batch: {batched:.3f} ms per image ({args.images} images)")
    print(f"render one at a time: {single:.3f} ms per image (baseline; {batched / single:.2f}x its time batched)")


if __name__ == "__main__":
    main()
