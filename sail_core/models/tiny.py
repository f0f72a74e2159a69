"""Tiny SD1.5-shaped and SDXL-shaped pipelines with random weights, for tests (as diffusers tests itself).

They are saved as ordinary diffusers folders (``model_index.json``, ``unet/``, ``vae/``,
``text_encoder/``, ``tokenizer/``, ...) and loaded through the same :func:`load_bundle` as a Hub id,
so tests exercise the real loading path. Their tokenizers are the real CLIP BPE tokenizer.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from sail_core.models.tokenizer import build_clip_tokenizer

TINY_RESOLUTION = 32
"""Image side of the tiny pipelines; their VAE downsamples by 2, so latents are 4×16×16."""


def _text_config(hidden: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, vocab_size=49408,
        hidden_size=hidden, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        max_position_embeddings=77, projection_dim=hidden, layer_norm_eps=1e-5,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=TINY_RESOLUTION,
    )


def _scheduler() -> DDPMScheduler:
    # SD's training schedule (scaled-linear betas 0.00085 → 0.012 over 1000 steps)
    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         num_train_timesteps=1000, clip_sample=False, prediction_type="epsilon", steps_offset=1)


def _unet(family: str) -> UNet2DConditionModel:
    common = dict(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=TINY_RESOLUTION // 2,
        in_channels=4, out_channels=4, norm_num_groups=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    if family == "sd15":
        return UNet2DConditionModel(cross_attention_dim=32, attention_head_dim=8, **common)
    return UNet2DConditionModel(
        cross_attention_dim=64, attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * 8 + 32, **common,
    )


def build_tiny_pipeline(family: Literal["sd15", "sdxl"], folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-weight pipeline of the given family into ``folder`` and return it."""
    folder = Path(folder)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer = build_clip_tokenizer(scratch)
    unet, vae, scheduler = _unet(family), _vae(), _scheduler()
    if family == "sd15":
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=CLIPTextModel(_text_config(32)), tokenizer=tokenizer, unet=unet,
            scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
    else:
        pipe = StableDiffusionXLPipeline(
            vae=vae, text_encoder=CLIPTextModel(_text_config(32)), tokenizer=tokenizer,
            text_encoder_2=CLIPTextModelWithProjection(_text_config(32)), tokenizer_2=tokenizer,
            unet=unet, scheduler=scheduler,
        )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
