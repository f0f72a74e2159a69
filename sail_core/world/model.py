"""The embedded world's text-to-image model: the same diffusers classes as Stable Diffusion, small.

A pixel-space ``UNet2DConditionModel`` (16×16×3, channels 32/64/64, cross-attention at 8×8 and
4×4), a two-layer ``CLIPTextModel`` over the real CLIP BPE tokenizer, and a cosine DDPM schedule.
It is saved as a diffusers folder without a VAE (``codec: pixel`` in the preset), so loading,
generation, self-reward, DPO and evaluation run through exactly the code that serves SD1.5.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from diffusers import DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from sail_core.io.atomic import atomic_dir
from sail_core.models.tokenizer import build_clip_tokenizer
from sail_core.world.layout import CANVAS

TEXT_LENGTH = 24
"""Tokens per prompt: the longest world prompt is 14 tokens with its start and end markers."""
TEXT_WIDTH = 64


def build_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=CANVAS, in_channels=3, out_channels=3, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_WIDTH, attention_head_dim=8, norm_num_groups=16,
    )


def build_text_encoder() -> CLIPTextModel:
    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=TEXT_WIDTH, intermediate_size=2 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=TEXT_LENGTH, bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407,
    ))


def build_scheduler() -> DDPMScheduler:
    # a cosine schedule: linear betas destroy 16×16 images too early for the model to learn from late steps
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="epsilon",
                         clip_sample=False)


def save_world_model(folder: str | Path, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                     provenance: dict, *, overwrite: bool = False) -> Path:
    """Write the diffusers folder (weights in float16: the shipped model is defined by these values)."""
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        unet.to(torch.float16).save_pretrained(tmp / "unet", safe_serialization=True)
        text_encoder.to(torch.float16).save_pretrained(tmp / "text_encoder", safe_serialization=True)
        unet.float()
        text_encoder.float()
        build_scheduler().save_pretrained(tmp / "scheduler")
        with tempfile.TemporaryDirectory() as scratch:
            build_clip_tokenizer(scratch, model_max_length=TEXT_LENGTH)
            (tmp / "tokenizer").mkdir()
            # vocab + merges suffice to load it; tokenizer.json would add 3.6 MB of redundancy to the repo
            for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
                if (Path(scratch) / name).exists():
                    shutil.copy(Path(scratch) / name, tmp / "tokenizer" / name)
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2))
    return Path(folder)
