"""The forward process q(x_t | x_0) and the denoising error that Diffusion-DPO and the self-reward use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import DDPMScheduler


def add_noise(scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor,
              timesteps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε, computed in float32."""
    alphas = scheduler.alphas_cumprod.to(latents.device, torch.float32)[timesteps]
    shape = (-1,) + (1,) * (latents.ndim - 1)
    return alphas.sqrt().view(shape) * latents.float() + (1 - alphas).sqrt().view(shape) * noise.float()


def training_target(scheduler: DDPMScheduler, latents: torch.Tensor, noise: torch.Tensor,
                    timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet predicts: ε for epsilon models, v = sqrt(ᾱ)·ε − sqrt(1−ᾱ)·x_0 for v-prediction."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise.float()
    if kind == "v_prediction":
        alphas = scheduler.alphas_cumprod.to(latents.device, torch.float32)[timesteps]
        shape = (-1,) + (1,) * (latents.ndim - 1)
        return alphas.sqrt().view(shape) * noise.float() - (1 - alphas).sqrt().view(shape) * latents.float()
    raise ValueError(f"unsupported prediction_type {kind!r}")


def per_sample_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖target − prediction‖² as the mean over channels and pixels, one value per sample
    (the reference implementation's convention; β = 5000 is calibrated for the mean, not the sum)."""
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
