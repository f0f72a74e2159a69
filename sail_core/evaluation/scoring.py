"""Building the scorers an evaluation names, and running them over images."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from sail_core.evaluation.scorers import build_scorer, canonical_name


def build_scorers(names: Sequence[str], device: torch.device | str = "cpu",
                  sources: Mapping[str, str] | None = None,
                  options: Mapping[str, Mapping[str, object]] | None = None) -> list:
    scorers = []
    for name in names:
        key = canonical_name(name)
        extra = dict((options or {}).get(key, {}))
        scorers.append(build_scorer(key, (sources or {}).get(key), device=device, **extra))
    return scorers


def score_images(scorers: Sequence, images: np.ndarray, prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """Every metric of every scorer, one value per image (uint8 [n, H, W, 3])."""
    pil = [Image.fromarray(a) for a in images]
    out: dict[str, np.ndarray] = {}
    for scorer in scorers:
        for metric, values in scorer.score(pil, list(prompts)).items():
            out[metric] = np.asarray(values, dtype=np.float64)
    return out
