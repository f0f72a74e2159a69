"""The world's real images: the RealAlign anchors of the embedded world
(``real.sources: [pkg:sail_core.world/data/real.parquet]``).

Real data here is what the world's camera takes: the web-data scene for a caption (``render``),
rendered for the labelled prompts only, so the held-out evaluation prompts never appear. RealAlign
curates its real images as reference points of quality; the ``curated`` set therefore removes the
capture nuisances (background noise, blur) that the raw web data has at random — with them, half of
the anchors would be blurred and real ≻ generated pairs would teach blur.

The shipped file (``assets.REAL_IMAGES_FILE``) is a Parquet table with ``image`` (PNG bytes) and
``caption``, the layout ``sail_core.data.real_images`` reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from sail_core.images import encode_png
from sail_core.io.tables import write_table
from sail_core.seeding import derive_seed
from sail_core.world.grammar import as_spec
from sail_core.world.labels import SplitConfig
from sail_core.world.raster import rasterise
from sail_core.world.render import sample_scene_arrays

REAL_SCHEMA = pa.schema([("image", pa.binary()), ("caption", pa.string())])


@dataclass(frozen=True)
class RealImagesConfig:
    per_prompt: int = 1
    seed: int = 0
    curated: bool = True
    """True: no background noise and no blur (RealAlign's curated real images); False: raw web data."""
    split: SplitConfig = SplitConfig()
    """The prompt split of the shipped labels, so the held-out prompts stay held out."""


def real_images_table(config: RealImagesConfig = RealImagesConfig()) -> pa.Table:
    """One deterministic render per (labelled prompt, copy), in prompt order."""
    labelled = config.split.split().labelled
    captions = [p for p in labelled for _ in range(config.per_prompt)]
    rng = np.random.default_rng(derive_seed("world-real-images", config.seed))
    scenes, _ = sample_scene_arrays([as_spec(c) for c in captions], rng)
    if config.curated:
        scenes = dataclasses.replace(scenes, noise_std=np.zeros_like(scenes.noise_std),
                                     blur_sigma=np.zeros_like(scenes.blur_sigma))
    images = rasterise(scenes)
    return pa.table({"image": [encode_png(a) for a in images], "caption": captions}, schema=REAL_SCHEMA)


def build_real_images(out: str | Path, config: RealImagesConfig = RealImagesConfig(), *,
                      overwrite: bool = False) -> Path:
    """Write the world's real images (e.g. to ``assets.REAL_IMAGES_FILE``)."""
    return write_table(out, real_images_table(config), metadata={"world_real_images": str(asdict(config))},
                       overwrite=overwrite)
