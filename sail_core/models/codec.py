"""Latent codecs: what the diffusion model denoises. SD uses its VAE; the embedded world uses pixels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from diffusers import AutoencoderKL


class LatentCodec(Protocol):
    latent_channels: int
    downscale: int

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] → latents [B, C, H/d, W/d]."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images [B, 3, H, W] in [-1, 1]."""
        ...


class VaeCodec:
    """Stable Diffusion's autoencoder. Encoding takes the posterior mean, so cached latents are
    deterministic (the posterior std of SD's VAE is tiny; training scripts that sample it differ
    by noise far below the diffusion noise)."""

    def __init__(self, vae: AutoencoderKL) -> None:
        self.vae = vae
        self.latent_channels = vae.config.latent_channels
        self.downscale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.scaling_factor = vae.config.scaling_factor
        self.shift_factor = getattr(vae.config, "shift_factor", None) or 0.0

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.vae.device, self.vae.dtype)
        mean = self.vae.encode(images).latent_dist.mean
        return ((mean - self.shift_factor) * self.scaling_factor).float()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.vae.device, self.vae.dtype) / self.scaling_factor + self.shift_factor
        return self.vae.decode(latents).sample.float().clamp(-1, 1)


class PixelCodec:
    """Identity codec: the model denoises RGB pixels in [-1, 1] directly."""

    latent_channels = 3
    downscale = 1

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return images.float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.float().clamp(-1, 1)
