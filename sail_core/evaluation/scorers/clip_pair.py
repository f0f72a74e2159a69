"""Scorers that compare a CLIP image embedding with a CLIP text embedding (PickScore, CLIP score):
batching, the transformers CLIP processor and tokenizer, and random-weight construction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel

from sail_core.evaluation.scorers import clip_common
from sail_core.evaluation.scorers.base import Runtime, check_batch_size, check_inputs, run_batched
from sail_core.evaluation.scorers.tiny import tiny_clip_tokenizer

MAX_TOKENS = 77


@dataclass(eq=False)
class ClipPairScorer:
    """Shared machinery of scorers that compare a CLIP image and text embedding."""

    model: CLIPModel
    image_processor: Any
    tokenizer: Any
    runtime: Runtime
    batch_size: int = 16
    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def load(cls, model: str | Path, processor: str | Path, *, device: torch.device | str,
             dtype: torch.dtype | None, batch_size: int):
        """The CLIP model from ``model`` and its image processor and tokenizer from ``processor``
        (Hub ids or local folders); float32 on CUDA unless ``dtype`` says otherwise."""
        return cls(
            model=clip_common.load_clip_model(model, "model"),
            image_processor=clip_common.load_image_processor(processor, "processor"),
            tokenizer=clip_common.load_tokenizer(processor, "processor"),
            runtime=Runtime.resolve(device, dtype, cuda_default=torch.float32),
            batch_size=batch_size,
        )

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        self.model = clip_common.frozen(self.model).to(self.runtime.device)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]

    def text_inputs(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=MAX_TOKENS,
                                 return_tensors="pt")
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    @torch.no_grad()
    def cosine(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        device = self.runtime.device
        pixels = self.pixel_values(images).to(device)
        text = {k: v.to(device) for k, v in self.text_inputs(prompts).items()}
        with self.runtime.autocast():
            image_features = clip_common.image_embeddings(self.model, pixels)
            text_features = clip_common.text_embeddings(self.model, text["input_ids"], text["attention_mask"])
        return clip_common.rowwise_cosine(image_features, text_features)

    def batch_scores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        raise NotImplementedError

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, np.ndarray]:
        rgb = check_inputs(images, prompts)
        return {self.metrics[0]: run_batched(rgb, list(prompts), self.batch_size, self.batch_scores)}


def random_clip_parts(seed: int, image_size: int, arch: dict[str, Any]) -> dict[str, Any]:
    tokenizer = tiny_clip_tokenizer()
    model = clip_common.random_clip_model(
        seed=seed, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, image_size=image_size, **arch,
    )
    processor = clip_common.PilClipImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return {"model": model, "image_processor": processor, "tokenizer": tokenizer}
