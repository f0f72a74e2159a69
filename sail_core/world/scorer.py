"""The hidden human as an evaluation scorer.

Per image: the utility; ``faithful`` (every stated attribute right, the strict rate) beside
``faithfulness`` (the mean of the stated attributes' checks, the faithfulness inside the utility);
``taste``; and, one by one, each attribute's check (``attribute.<name>``) and each taste term
(``taste.<name>``). A check or term that does not apply to a prompt (an attribute it leaves unsaid,
a taste term for an attribute it states) is NaN, and summaries average over the images where it applies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from sail_core.errors import InputError
from sail_core.world.human import ATTRIBUTES, TASTE_TERMS, Judgement, judge_batch

ATTRIBUTE_PREFIX = "attribute."
TASTE_PREFIX = "taste."


def judgement_metrics(judgements: Sequence[Judgement]) -> dict[str, np.ndarray]:
    """Every metric of the world scorer, one value per judgement (NaN where it does not apply)."""
    def column(values: Sequence[float | None]) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    out = {
        "utility": column([j.utility for j in judgements]),
        "faithful": column([float(j.faithful) for j in judgements]),
        "faithfulness": column([j.faithfulness for j in judgements]),
        "taste": column([j.taste for j in judgements]),
    }
    for name in ATTRIBUTES:
        out[ATTRIBUTE_PREFIX + name] = column([j.checks.get(name) for j in judgements])
    for name in TASTE_TERMS:
        out[TASTE_PREFIX + name] = column([j.taste_terms.get(name) for j in judgements])
    return out


class WorldJudgeScorer:
    """Registered as the ``world`` scorer (pyproject.toml, ``sail.scorers`` entry points)."""

    name = "world"
    metrics = ("utility", "faithful", "faithfulness", "taste",
               *(ATTRIBUTE_PREFIX + a for a in ATTRIBUTES), *(TASTE_PREFIX + t for t in TASTE_TERMS))

    def __init__(self, device: object = None) -> None:
        """The judge looks at pixels on the CPU; ``device`` is accepted for the scorer interface."""

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, np.ndarray]:
        if len(images) != len(prompts):
            raise InputError(f"{len(images)} images but {len(prompts)} prompts", parameter="prompts")
        arrays = np.stack([np.asarray(image.convert("RGB")) for image in images])
        return judgement_metrics(judge_batch(list(prompts), arrays))
