"""HPSv2 / HPSv2.1 (Wu et al., 2023): open_clip ViT-H-14 fine-tuned on HPDv2.

Formula, from tgxs002/HPSv2 @866735e (the ``hpsv2`` 1.2.0 package), ``hpsv2/evaluation.py``
``evaluate_benchmark`` (the benchmark numbers papers report, SAIL's included)::

    model, _, preprocess_val = create_model_and_transforms('ViT-H-14', ..., precision='amp',
                                                           light_augmentation=True, output_dict=True)
    model.load_state_dict(torch.load(checkpoint)['state_dict'])   # HPS_v2{,.1}_compressed.pt
    with torch.cuda.amp.autocast():
        outputs = model(images, tokenizer(prompts))                # features L2-normalised
        logits_per_image = outputs["image_features"] @ outputs["text_features"].T * 100
    score = diagonal(logits_per_image)

So the score is ``100 * cos(image, prompt)``; ``logit_scale`` is not used (``hpsv2.score`` in
``img_score.py`` returns the same cosine without the 100). ``preprocess_val`` is HPSv2's
resize-longest-side-and-pad transform (``preprocess.resize_longest_pad``), not CLIP's centre crop.

The open_clip checkpoint is loaded into transformers' ``CLIPModel`` through ``clip_convert``
(open_clip itself imports torchvision, which cannot be installed here). Text is tokenized as
open_clip's ``SimpleTokenizer`` does: ftfy, HTML unescape (twice), whitespace collapse, lower case,
then CLIP BPE with the same vocabulary (the transformers files of
laion/CLIP-ViT-H-14-laion2B-s32B-b79K), start/end tokens, 77 positions with end-of-text kept on
truncation.

Precision: the reference runs CUDA under float16 autocast, the CUDA default here.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel

from sail_core.errors import InputError
from sail_core.evaluation.scorers import clip_common
from sail_core.evaluation.scorers.base import Runtime, check_batch_size, check_inputs, run_batched
from sail_core.evaluation.scorers.clip_convert import VIT_H_14, ClipHeads, clip_model_from_open_clip
from sail_core.evaluation.scorers.loading import load_state_dict, resolve_file
from sail_core.evaluation.scorers.preprocess import resize_longest_pad
from sail_core.evaluation.scorers.tiny import tiny_clip_tokenizer

HPS_REPO = "xswu/HPSv2"
HPS_FILES = {"v2.0": "HPS_v2_compressed.pt", "v2.1": "HPS_v2.1_compressed.pt"}
HPS_METRICS = {"v2.0": "hpsv2", "v2.1": "hpsv21"}
HPS_TOKENIZER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
CONTEXT_LENGTH = 77


def open_clip_clean(text: str) -> str:
    """open_clip ``SimpleTokenizer.encode``'s text cleaning: ``whitespace_clean(basic_clean(t)).lower()``."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


def check_version(version: str) -> str:
    if version not in HPS_FILES:
        raise InputError(f"unknown HPS version {version!r}; choose one of {sorted(HPS_FILES)}", parameter="version")
    return version


@dataclass(eq=False)
class HPSv2Scorer:
    model: CLIPModel
    tokenizer: Any
    runtime: Runtime
    version: str = "v2.1"
    batch_size: int = 16

    def __post_init__(self) -> None:
        check_version(self.version)
        check_batch_size(self.batch_size)
        self.model = clip_common.frozen(self.model).to(self.runtime.device)

    @property
    def name(self) -> str:
        return "hpsv2" if self.version == "v2.0" else "hpsv2.1"

    @property
    def metrics(self) -> tuple[str, ...]:
        return (HPS_METRICS[self.version],)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([resize_longest_pad(image, self.image_size) for image in images])

    def input_ids(self, prompts: Sequence[str]) -> torch.Tensor:
        encoded = self.tokenizer([open_clip_clean(p) for p in prompts], padding="max_length", truncation=True,
                                 max_length=CONTEXT_LENGTH, return_tensors="pt")
        return encoded["input_ids"]

    @torch.no_grad()
    def batch_scores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        device = self.runtime.device
        pixels = self.pixel_values(images).to(device)
        # No attention mask, as in open_clip: the causal mask already hides the padding after the
        # end-of-text token the embedding is read at.
        ids = self.input_ids(prompts).to(device)
        with self.runtime.autocast():
            image_features = clip_common.image_embeddings(self.model, pixels)
            text_features = clip_common.text_embeddings(self.model, ids, None)
        return 100 * clip_common.rowwise_cosine(image_features, text_features)

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, np.ndarray]:
        rgb = check_inputs(images, prompts)
        return {self.metrics[0]: run_batched(rgb, list(prompts), self.batch_size, self.batch_scores)}

    @classmethod
    def from_state_dict(
        cls, state: Mapping[str, torch.Tensor], tokenizer: Any, *, heads: ClipHeads = VIT_H_14, version: str = "v2.1",
        device: torch.device | str = "cpu", dtype: torch.dtype | None = None, batch_size: int = 16,
    ) -> HPSv2Scorer:
        """From an open_clip-format state dict (the ``state_dict`` of an HPS checkpoint)."""
        model = clip_model_from_open_clip(
            state, heads, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        )
        return cls(model=model, tokenizer=tokenizer, runtime=Runtime.resolve(device, dtype, torch.float16),
                   version=version, batch_size=batch_size)

    @classmethod
    def from_pretrained(
        cls, checkpoint: str | Path = HPS_REPO, tokenizer: str | Path = HPS_TOKENIZER, *, version: str = "v2.1",
        device: torch.device | str = "cpu", dtype: torch.dtype | None = None, batch_size: int = 16,
    ) -> HPSv2Scorer:
        """``checkpoint``: an HPS .pt file (read weights-only), a folder holding it, or a Hub repository."""
        path = resolve_file(checkpoint, HPS_FILES[check_version(version)], parameter="checkpoint")
        return cls.from_state_dict(
            load_state_dict(path, parameter="checkpoint"), clip_common.load_tokenizer(tokenizer, "tokenizer"),
            version=version, device=device, dtype=dtype, batch_size=batch_size,
        )

    @classmethod
    def random(cls, seed: int = 0, *, version: str = "v2.1", device: torch.device | str = "cpu",
               batch_size: int = 16, image_size: int = 224, **arch: int) -> HPSv2Scorer:
        """Random weights of the HPS architecture (GELU CLIP ViT), tiny widths, tiny tokenizer."""
        tokenizer = tiny_clip_tokenizer()
        model = clip_common.random_clip_model(
            seed=seed, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, image_size=image_size,
            act="gelu", **arch,
        )
        return cls(model=model, tokenizer=tokenizer, runtime=Runtime.resolve(device, None, torch.float32),
                   version=version, batch_size=batch_size)
