"""The embedded world's text-to-image model: the same diffusers classes as Stable Diffusion, small.

A pixel-space ``UNet2DConditionModel`` (16×16×3, cross-attention at 8×8 and 4×4), a small
``CLIPTextModel`` over the real CLIP BPE tokenizer, and a cosine DDPM schedule with v-prediction and
"trailing" timestep spacing (as SD 2.x's v-models and Lin et al. 2024's zero-terminal-SNR recipe).
It is saved as a diffusers folder without a VAE (``codec: pixel`` in the preset), so loading,
generation, self-reward, DPO and evaluation run through exactly the code that serves SD1.5.

Why v-prediction and trailing spacing: at 16×16 the background colour and an object's position are
the image's lowest frequencies, decided at the very highest noise levels. The cosine schedule
reaches ᾱ ≈ 2e-9 at t = 999 (zero terminal SNR in effect), where an ε-prediction carries almost no
information about x₀, so an ε-model never learns those words from the text; and "leading" spacing
starts 10-step sampling at t = 900, whose ᾱ = 0.024 already fixes the mean colour of pure noise to
grey. A v-model predicts x₀ at t = 999 from the prompt alone, and trailing spacing starts there.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from sail_core.algorithm.sampler import sample_latents
from sail_core.config import ModelConfig, SamplerConfig
from sail_core.errors import InputError
from sail_core.images import tensor_to_uint8
from sail_core.io.atomic import atomic_dir
from sail_core.io.tensors import read_tensors
from sail_core.models.bundle import load_bundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import load_for_inference
from sail_core.models.tokenizer import build_clip_tokenizer
from sail_core.world.layout import CANVAS

if TYPE_CHECKING:  # imported where a model is built: a process that only plans or reads records skips them
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

TEXT_LENGTH = 24
"""Tokens per prompt: the longest world prompt is 14 tokens with its start and end markers."""


@dataclass(frozen=True)
class Architecture:
    """The sizes of the world model (the defaults are the shipped model's)."""

    channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    text_width: int = 64
    text_layers: int = 2
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"
    timestep_spacing: Literal["leading", "trailing"] = "trailing"


def build_unet(arch: Architecture = Architecture()) -> UNet2DConditionModel:
    from diffusers import UNet2DConditionModel

    depth = len(arch.channels)
    return UNet2DConditionModel(
        sample_size=CANVAS, in_channels=3, out_channels=3, block_out_channels=arch.channels,
        layers_per_block=arch.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (depth - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (depth - 1) + ("UpBlock2D",),
        cross_attention_dim=arch.text_width, attention_head_dim=8, norm_num_groups=16,
    )


def build_text_encoder(arch: Architecture = Architecture()) -> CLIPTextModel:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=arch.text_width, intermediate_size=2 * arch.text_width,
        num_hidden_layers=arch.text_layers, num_attention_heads=4, max_position_embeddings=TEXT_LENGTH,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
    ))


def build_scheduler(arch: Architecture = Architecture()) -> DDPMScheduler:
    from diffusers import DDPMScheduler

    # a cosine schedule: linear betas destroy 16×16 images too early for the model to learn from late steps
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                         prediction_type=arch.prediction_type, timestep_spacing=arch.timestep_spacing,
                         clip_sample=False)


WEIGHT_FILES = {"unet": "unet/diffusion_pytorch_model.safetensors", "text_encoder": "text_encoder/model.safetensors"}
"""Where a world model folder keeps each part's weights (diffusers' and transformers' file names)."""


def load_weights(folder: Path, unet: torch.nn.Module, text_encoder: torch.nn.Module) -> None:
    """A world model folder's (float16) weights into freshly built modules of the same architecture."""
    for module, file in ((unet, folder / WEIGHT_FILES["unet"]), (text_encoder, folder / WEIGHT_FILES["text_encoder"])):
        saved = {name: tensor.float() for name, tensor in read_tensors(file).items()}
        try:
            module.load_state_dict(saved, strict=True)
        except RuntimeError as exc:
            raise InputError(f"these weights do not fit the configured architecture: {str(exc).splitlines()[0]}",
                             file=file) from exc


def save_world_model(folder: str | Path, unet: UNet2DConditionModel, text_encoder: CLIPTextModel,
                     scheduler: DDPMScheduler, provenance: dict, *, overwrite: bool = False) -> Path:
    """Write the diffusers folder (weights in float16: the shipped model is defined by these values)."""
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        unet.to(torch.float16).save_pretrained(tmp / "unet", safe_serialization=True)
        text_encoder.to(torch.float16).save_pretrained(tmp / "text_encoder", safe_serialization=True)
        unet.float()
        text_encoder.float()
        scheduler.save_pretrained(tmp / "scheduler")
        with tempfile.TemporaryDirectory() as scratch:
            build_clip_tokenizer(scratch, model_max_length=TEXT_LENGTH)
            (tmp / "tokenizer").mkdir()
            # vocab + merges suffice to load it; tokenizer.json would add 3.6 MB of redundancy to the repo
            for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
                if (Path(scratch) / name).exists():
                    shutil.copy(Path(scratch) / name, tmp / "tokenizer" / name)
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2))
    return Path(folder)


def generate(folder: str | Path, prompts: Sequence[str], seeds: Sequence[int], sampler: SamplerConfig) -> np.ndarray:
    """uint8 [n, 16, 16, 3]: the model in ``folder`` sampled through the SD1.5 code path, one seed per prompt."""
    config = world_model_config(folder)
    bundle = load_bundle(config)
    base = load_for_inference(config, ".", UnetCheckpoint(), UnetCheckpoint())
    latents = sample_latents(base.policy, bundle, bundle.prompt_encoder.encode(list(prompts)),
                             bundle.prompt_encoder.unconditional(), list(seeds), sampler)
    return tensor_to_uint8(bundle.codec.decode(latents))


def world_model_config(folder: str | Path) -> ModelConfig:
    """The ``model`` section that loads a world model folder (as the ``world`` preset does)."""
    return ModelConfig(family="sd15", source=str(folder), codec="pixel", resolution=CANVAS, local_files_only=True)
