"""PickScore (Kirstain et al., 2023): CLIP-H fine-tuned on Pick-a-Pic preferences.

Formula, from the README of yuvalkirstain/PickScore @f79607f (``calc_probs``)::

    processor = AutoProcessor.from_pretrained("laion/CLIP-ViT-H-14-laion2B-s32B-b79K")
    model = AutoModel.from_pretrained("yuvalkirstain/PickScore_v1")
    image_embs = model.get_image_features(...); image_embs /= ||image_embs||
    text_embs = model.get_text_features(processor(text=prompt, padding=True, truncation=True,
                                                  max_length=77)); text_embs /= ||text_embs||
    scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]

i.e. ``exp(logit_scale) * cos(image, prompt)`` (about 100 x cosine; SD1.5 scores ~20-22), which is
the scale the SAIL paper reports. Pairs here are (image_i, prompt_i), so the diagonal is taken.

Precision: the README runs float32; that is the CUDA default here too (bf16/fp16 on request).
Images go through the PIL CLIP image processor (what transformers 4 ran for the README), not the
torchvision one transformers 5 prefers when torchvision is installed.
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

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


@dataclass(eq=False)
class PickScoreScorer(ClipPairScorer):
    name: ClassVar[str] = "pickscore"
    metrics: ClassVar[tuple[str, ...]] = ("pickscore",)

    @torch.no_grad()
    def batch_scores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        return self.model.logit_scale.exp().float() * self.cosine(images, prompts)

    @classmethod
    def from_pretrained(
        cls, model: str | Path = PICKSCORE_MODEL, processor: str | Path = PICKSCORE_PROCESSOR, *,
        device: torch.device | str = "cpu", dtype: torch.dtype | None = None, batch_size: int = 16,
    ) -> PickScoreScorer:
        """``model``/``processor``: Hub ids or local folders (offline: folders or a warm HF cache)."""
        return cls.load(model, processor, device=device, dtype=dtype, batch_size=batch_size)

    @classmethod
    def random(cls, seed: int = 0, *, device: torch.device | str = "cpu", batch_size: int = 16,
               image_size: int = 224, **arch: int) -> PickScoreScorer:
        """Random weights of the PickScore architecture (a CLIP ViT), tiny widths, tiny tokenizer."""
        return cls(**random_clip_parts(seed, image_size, arch), runtime=Runtime.resolve(device, None, torch.float32),
                   batch_size=batch_size)
