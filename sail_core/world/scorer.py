"""The hidden human as an evaluation scorer: utility, faithfulness (all stated attributes right) and taste."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from sail_core.errors import InputError
from sail_core.world.human import judge_batch


class WorldJudgeScorer:
    """Registered as the ``world`` scorer (pyproject.toml, ``sail.scorers`` entry points)."""

    name = "world"
    metrics = ("utility", "faithful", "taste")

    def __init__(self, device: object = None) -> None:
        """The judge looks at pixels on the CPU; ``device`` is accepted for the scorer interface."""

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, np.ndarray]:
        if len(images) != len(prompts):
            raise InputError(f"{len(images)} images but {len(prompts)} prompts", parameter="prompts")
        arrays = np.stack([np.asarray(image.convert("RGB")) for image in images])
        judgements = judge_batch(list(prompts), arrays)
        return {
            "utility": np.array([j.utility for j in judgements]),
            "faithful": np.array([float(j.faithful) for j in judgements]),
            "taste": np.array([j.taste for j in judgements]),
        }
