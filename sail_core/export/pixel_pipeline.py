"""A diffusers pipeline for pixel-space text-to-image models (no VAE), such as sail's small CPU model.

Stable Diffusion's pipelines need a VAE; a model that denoises RGB pixels directly (``model.codec:
pixel``) has none, so it is saved as this pipeline: the same ``UNet2DConditionModel``, ``CLIPTextModel``,
``CLIPTokenizer`` and scheduler files as a Stable Diffusion folder, and a ``model_index.json`` naming
this class. Load it with ``PixelDiffusionPipeline.from_pretrained(folder)`` (diffusers resolves every
component from its own library; no remote code). The loop is Stable Diffusion's: per-sample generators,
classifier-free guidance against the empty prompt, the scheduler's steps; its images equal those sail's
sampler draws for the model at the same seeds.

This module imports only torch and diffusers, so it can be copied next to a model and used without sail.
"""

from __future__ import annotations

import inspect

import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor


class PixelDiffusionPipeline(DiffusionPipeline):
    """Text-to-image with a pixel-space ``UNet2DConditionModel`` conditioned on a CLIP text encoder's last
    hidden state (Stable Diffusion 1.5's conditioning)."""

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet, text_encoder, tokenizer, scheduler) -> None:
        super().__init__()
        self.register_modules(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
        self.image_processor = VaeImageProcessor(vae_scale_factor=1, do_normalize=True)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids).last_hidden_state

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_inference_steps: int = 10, guidance_scale: float = 3.0,
                 negative_prompt: str = "", eta: float = 0.0,
                 generator: torch.Generator | list[torch.Generator] | None = None,
                 output_type: str = "pil", return_dict: bool = True):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        cond = self.encode_prompt(prompts)
        guided = guidance_scale != 1.0
        if guided:
            uncond = self.encode_prompt([negative_prompt]).expand_as(cond)
            cond = torch.cat([uncond, cond])
        side, channels = self.unet.config.sample_size, self.unet.config.in_channels
        latents = randn_tensor((len(prompts), channels, side, side), generator=generator, device=self.device,
                               dtype=torch.float32)
        self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        latents = latents * self.scheduler.init_noise_sigma
        step_kwargs = {}
        accepted = set(inspect.signature(self.scheduler.step).parameters)
        if "generator" in accepted:
            step_kwargs["generator"] = generator
        if "eta" in accepted:
            step_kwargs["eta"] = eta
        dtype = self.unet.dtype
        for t in self.progress_bar(self.scheduler.timesteps):
            model_in = self.scheduler.scale_model_input(torch.cat([latents, latents]) if guided else latents, t)
            timesteps = t.expand(model_in.shape[0]).to(self.device)
            prediction = self.unet(model_in.to(dtype), timesteps, encoder_hidden_states=cond.to(dtype)).sample.float()
            if guided:
                uncond_pred, cond_pred = prediction.chunk(2)
                prediction = uncond_pred + guidance_scale * (cond_pred - uncond_pred)
            latents = self.scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
        images = self.image_processor.postprocess(latents.clamp(-1, 1), output_type=output_type)
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)
