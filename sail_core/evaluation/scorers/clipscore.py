"""CLIP score: ``100 * max(cos(image, prompt), 0)`` per pair, with OpenAI CLIP ViT-L/14.

Convention: torchmetrics' ``CLIPScore`` (Lightning-AI/torchmetrics,
``src/torchmetrics/functional/multimodal/clip_score.py``, v1.9.0), whose documented formula is
``CLIPScore(I, C) = max(100 * cos(E_I, E_C), 0)`` and whose default model is
``openai/clip-vit-large-patch14``; images go through that model's CLIP processor and features are
divided by their L2 norm. Two deliberate differences, both invisible for ordinary prompts:

* torchmetrics returns ``max(mean(100 * cos), 0)`` over a batch; here the documented per-pair
  ``max`` is applied per image, so a mean of these equals torchmetrics' value unless some pair has
  a negative cosine (which CLIP ViT-L/14 essentially never gives an image and its caption).
* For a prompt longer than 77 tokens torchmetrics slices the token ids, dropping the end-of-text
  token the text embedding is pooled at; here the tokenizer truncates and keeps it (as PickScore's
  reference does). Prompts of at most 77 tokens score identically.

(The 2.5 x max(cos, 0) "CLIP-S" of Hessel et al., 2021 is a different scale; not used here.)
Precision: float32 by default, as torchmetrics runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image

from sail_core.evaluation.scorers.base import Runtime
from sail_core.evaluation.scorers.clip_pair import ClipPairScorer, random_clip_parts

CLIPSCORE_MODEL = "openai/clip-vit-large-patch14"


@dataclass(eq=False)
class ClipScoreScorer(ClipPairScorer):
    name: ClassVar[str] = "clipscore"
    metrics: ClassVar[tuple[str, ...]] = ("clipscore",)

    @torch.no_grad()
    def batch_scores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        return torch.clamp(100 * self.cosine(images, prompts), min=0.0)

    @classmethod
    def from_pretrained(
        cls, model: str | Path = CLIPSCORE_MODEL, processor: str | Path | None = None, *,
        device: torch.device | str = "cpu", dtype: torch.dtype | None = None, batch_size: int = 16,
    ) -> ClipScoreScorer:
        processor = processor or model
        return cls.load(model, processor, device=device, dtype=dtype, batch_size=batch_size)

    @classmethod
    def random(cls, seed: int = 0, *, device: torch.device | str = "cpu", batch_size: int = 16,
               image_size: int = 224, **arch: int) -> ClipScoreScorer:
        return cls(**random_clip_parts(seed, image_size, {"act": "quick_gelu", **arch}),
                   runtime=Runtime.resolve(device, None, torch.float32), batch_size=batch_size)
