"""LAION aesthetic predictor v2 (``sac+logos+ava1-l14-linearMSE.pth``) on CLIP ViT-L/14.

Formula, from christophschuhmann/improved-aesthetic-predictor ``simple_inference.py`` @6934dd8::

    model2, preprocess = clip.load("ViT-L/14")            # OpenAI CLIP
    image_features = model2.encode_image(preprocess(pil_image))
    im_emb_arr = normalized(image_features)               # x / ||x||_2 (a zero norm counts as 1)
    prediction = MLP(768)(im_emb_arr)                     # heads.LinearStackHead, float32

``preprocess`` is OpenAI CLIP's Resize(224, bicubic) + CenterCrop(224) + Normalize, reproduced in
``preprocess.resize_center_crop``. The CLIP weights are ``openai/clip-vit-large-patch14`` (the
transformers conversion of OpenAI's ViT-L/14), or an open_clip/OpenAI-format state dict in a
safetensors/weights-only file, mapped with ``clip_convert``. The head file published in that
repository has sha256 21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0 (3,714,759
bytes); its Hub mirror used by default is camenduru/improved-aesthetic-predictor.

Precision: OpenAI's ``clip.load`` puts CLIP in float16 on CUDA, so CUDA defaults to float16
autocast for the CLIP tower; the head always runs in float32 as the reference casts to float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel

from sail_core.errors import InputError
from sail_core.evaluation.scorers import clip_common
from sail_core.evaluation.scorers.base import Runtime, check_batch_size, check_inputs, run_batched
from sail_core.evaluation.scorers.clip_convert import VIT_L_14_OPENAI, ClipHeads, clip_model_from_open_clip
from sail_core.evaluation.scorers.heads import LinearStackHead, head_from_state_dict
from sail_core.evaluation.scorers.loading import load_state_dict, resolve_file
from sail_core.evaluation.scorers.preprocess import resize_center_crop

AESTHETIC_HEAD_REPO = "camenduru/improved-aesthetic-predictor"
AESTHETIC_HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"
AESTHETIC_CLIP = "openai/clip-vit-large-patch14"


def l2_normalized(features: torch.Tensor) -> torch.Tensor:
    """The reference's numpy ``normalized``: divide by the L2 norm, a zero norm treated as 1."""
    norm = features.norm(p=2, dim=-1, keepdim=True)
    return features / torch.where(norm == 0, torch.ones_like(norm), norm)


def load_clip(source: str | Path, heads: ClipHeads = VIT_L_14_OPENAI) -> CLIPModel:
    """A transformers folder/Hub id, or a single open_clip/OpenAI-format weights file."""
    path = Path(source)
    if path.is_file():
        return clip_common.frozen(clip_model_from_open_clip(load_state_dict(path, parameter="clip"), heads))
    return clip_common.load_clip_model(source, "clip")


@dataclass(eq=False)
class AestheticScorer:
    clip: CLIPModel
    head: LinearStackHead
    runtime: Runtime
    batch_size: int = 32
    name: ClassVar[str] = "aesthetic"
    metrics: ClassVar[tuple[str, ...]] = ("aesthetic",)

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        if self.head.input_size != self.clip.config.projection_dim:
            raise InputError(f"aesthetic head takes {self.head.input_size}-d embeddings but the CLIP model "
                             f"makes {self.clip.config.projection_dim}-d ones", parameter="head")
        self.clip = clip_common.frozen(self.clip).to(self.runtime.device)
        self.head = clip_common.frozen(self.head).to(self.runtime.device)

    @property
    def image_size(self) -> int:
        return int(self.clip.config.vision_config.image_size)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return torch.stack([resize_center_crop(image, self.image_size) for image in images])

    @torch.no_grad()
    def embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Normalised float32 CLIP image embeddings, the head's input."""
        pixels = self.pixel_values(images).to(self.runtime.device)
        with self.runtime.autocast():
            features = clip_common.image_embeddings(self.clip, pixels)
        return l2_normalized(features.float())

    @torch.no_grad()
    def batch_scores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        return self.head(self.embeddings(images)).squeeze(-1)

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Prompts are accepted for the common interface and ignored: the predictor sees only images."""
        rgb = check_inputs(images, prompts)
        placeholder = [""] * len(rgb)
        return {"aesthetic": run_batched(rgb, placeholder, self.batch_size, self.batch_scores)}

    @classmethod
    def from_pretrained(
        cls, head: str | Path = AESTHETIC_HEAD_REPO, clip: str | Path = AESTHETIC_CLIP, *,
        device: torch.device | str = "cpu", dtype: torch.dtype | None = None, batch_size: int = 32,
    ) -> AestheticScorer:
        """``head``: the .pth/.safetensors file, a folder holding it, or a Hub repository."""
        head_state = load_state_dict(resolve_file(head, AESTHETIC_HEAD_FILE, parameter="head"), parameter="head")
        return cls(clip=load_clip(clip), head=head_from_state_dict(head_state),
                   runtime=Runtime.resolve(device, dtype, cuda_default=torch.float16), batch_size=batch_size)

    @classmethod
    def random(cls, seed: int = 0, *, device: torch.device | str = "cpu", batch_size: int = 32,
               image_size: int = 224, **arch: int) -> AestheticScorer:
        """Random weights: a tiny QuickGELU CLIP ViT and a head of the published layout."""
        arch = {"projection_dim": 16, **arch}
        clip = clip_common.random_clip_model(seed=seed, vocab_size=8, bos_token_id=6, eos_token_id=7, pad_token_id=7,
                                             image_size=image_size, act="quick_gelu", **arch)
        torch.manual_seed(seed + 1)
        head = LinearStackHead(arch["projection_dim"])
        return cls(clip=clip, head=head, runtime=Runtime.resolve(device, None, torch.float32), batch_size=batch_size)
