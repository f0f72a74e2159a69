"""Loading a text-to-image diffusion model (SD1.5 or SDXL layout: also the embedded world) with diffusers.

The :class:`ModelBundle` holds the frozen parts every stage needs: the noise schedule, the latent
codec and the prompt encoder. UNets are loaded separately (:func:`load_unet`), because stages need
different ones: generation one, ranking a policy and a judge reference, training a trainable
policy and a frozen reference.

diffusers and transformers are imported where a model is loaded, not with this module: a process that
only orchestrates (a flow whose stages are cached, ``prefect deploy``, a crash hook) starts seconds sooner.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from sail_core.config import DType, ModelConfig, SamplerConfig
from sail_core.errors import InputError
from sail_core.io.paths import local_path
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.codec import LatentCodec, PixelCodec, VaeCodec
from sail_core.models.conditioning import Conditioning, PromptEncoder

if TYPE_CHECKING:
    from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel


def torch_dtype(name: DType) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def resolve_source(config: ModelConfig) -> str:
    return local_path(config.source)


def _pretrained_kwargs(config: ModelConfig) -> dict:
    kwargs: dict = {"use_safetensors": True, "local_files_only": config.local_files_only}
    if config.revision:
        kwargs["revision"] = config.revision
    if config.variant:
        kwargs["variant"] = config.variant
    return kwargs


@dataclass
class ModelBundle:
    config: ModelConfig
    noise_scheduler: DDPMScheduler
    codec: LatentCodec
    prompt_encoder: PromptEncoder
    device: torch.device

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.config.resolution // self.codec.downscale
        return (self.codec.latent_channels, side, side)

    @property
    def num_train_timesteps(self) -> int:
        return self.noise_scheduler.config.num_train_timesteps

    def unet_kwargs(self, cond: Conditioning, dtype: torch.dtype) -> dict:
        """Keyword arguments of ``UNet2DConditionModel.forward`` besides the sample and timestep."""
        cond = cond.to(self.device, dtype)
        kwargs: dict = {"encoder_hidden_states": cond.prompt_embeds}
        if self.config.family == "sdxl":
            # Micro-conditioning: original size, crop offset and target size. Every latent here is a
            # centre-cropped resolution×resolution image (or a sample at that size), so one value serves.
            side = self.config.resolution
            time_ids = torch.tensor([side, side, 0, 0, side, side], device=self.device, dtype=dtype)
            kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled, "time_ids": time_ids.expand(len(cond), 6)}
        return kwargs

    def sampler_scheduler(self, sampler: SamplerConfig) -> DDPMScheduler | DDIMScheduler:
        from diffusers import DDIMScheduler, DDPMScheduler

        scheduler_cls = DDIMScheduler if sampler.kind == "ddim" else DDPMScheduler
        scheduler = scheduler_cls.from_config(self.noise_scheduler.config)
        scheduler.set_timesteps(sampler.steps, device=self.device)
        return scheduler


@contextmanager
def _folder_errors(source: str, parameter: str):
    """A file missing from a local folder is bad input, not a transient error: say so (the stage task retries
    other errors, and diffusers reports a missing file as an OSError, as it does a lost connection)."""
    try:
        yield
    except OSError as exc:
        if not Path(source).is_dir():
            raise
        raise InputError(f"cannot load the model from the folder {source}: {exc}", parameter=parameter) from exc


def load_bundle(config: ModelConfig, device: torch.device | str = "cpu") -> ModelBundle:
    with _folder_errors(resolve_source(config), "model.source"):
        return _load_bundle(config, torch.device(device))


def _load_bundle(config: ModelConfig, device: torch.device) -> ModelBundle:
    from diffusers import AutoencoderKL, DDPMScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    source = resolve_source(config)
    kwargs = _pretrained_kwargs(config)
    dtype = torch_dtype(config.frozen_dtype)
    scheduler = DDPMScheduler.from_pretrained(source, subfolder="scheduler",
                                              local_files_only=config.local_files_only,
                                              **({"revision": config.revision} if config.revision else {}))
    tokenizers = [CLIPTokenizer.from_pretrained(source, subfolder="tokenizer",
                                                local_files_only=config.local_files_only)]
    encoders: list = [CLIPTextModel.from_pretrained(source, subfolder="text_encoder", torch_dtype=dtype, **kwargs)]
    if config.family == "sdxl":
        tokenizers.append(CLIPTokenizer.from_pretrained(source, subfolder="tokenizer_2",
                                                        local_files_only=config.local_files_only))
        encoders.append(CLIPTextModelWithProjection.from_pretrained(source, subfolder="text_encoder_2",
                                                                    torch_dtype=dtype, **kwargs))
    for encoder in encoders:
        encoder.to(device).eval().requires_grad_(False)
    codec: LatentCodec
    if config.codec == "pixel":
        codec = PixelCodec()
    else:
        if config.vae_source:
            vae_source = local_path(config.vae_source)
            with _folder_errors(vae_source, "model.vae_source"):
                vae = AutoencoderKL.from_pretrained(vae_source, torch_dtype=dtype, use_safetensors=True,
                                                    local_files_only=config.local_files_only)
        else:
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", torch_dtype=dtype, **kwargs)
        codec = VaeCodec(vae.to(device).eval().requires_grad_(False))
    encoder = PromptEncoder(config.family, tokenizers, encoders, empty_prompt_zeros=config.empty_prompt_zeros)
    return ModelBundle(config, scheduler, codec, encoder, device)


def load_unet(
    config: ModelConfig,
    checkpoint: UnetCheckpoint,
    run_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> UNet2DConditionModel:
    """The UNet of ``checkpoint`` without adapters (LoRA lineages are added by ``denoisers``)."""
    from diffusers import UNet2DConditionModel

    if checkpoint.kind == "full":
        assert checkpoint.weights is not None
        unet = UNet2DConditionModel.from_pretrained(Path(run_dir) / checkpoint.weights, torch_dtype=dtype,
                                                    use_safetensors=True, local_files_only=True)
    else:
        with _folder_errors(resolve_source(config), "model.source"):
            unet = UNet2DConditionModel.from_pretrained(resolve_source(config), subfolder="unet", torch_dtype=dtype,
                                                        **_pretrained_kwargs(config))
    return unet.to(device)


@lru_cache(maxsize=2)
def _cached_bundle(config_json: str, device: str) -> ModelBundle:
    return load_bundle(ModelConfig.model_validate_json(config_json), device)


def cached_bundle(config: ModelConfig, device: torch.device | str = "cpu") -> ModelBundle:
    """``load_bundle`` memoised on (config, device): the frozen parts never change, and stages that run
    in one process (the tasks of a flow run) should not reload text encoders and VAEs each time."""
    return _cached_bundle(config.model_dump_json(), str(torch.device(device)))
