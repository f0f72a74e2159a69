"""Batched classifier-free-guided sampling with DDPM or DDIM, keeping the final latents.

Each sample has its own seed, which drives both its initial noise and (for DDPM / DDIM with η>0)
its per-step noise, so a sample is identical whatever batch it is generated in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from sail_core.config import SamplerConfig
from sail_core.models.bundle import ModelBundle
from sail_core.models.conditioning import Conditioning

NoisePredictor = Callable[..., torch.Tensor]
"""``predict(sample, timesteps, **unet_kwargs) -> noise prediction`` (e.g. ``Denoisers.policy``)."""


@torch.no_grad()
def sample_latents(
    predict: NoisePredictor,
    bundle: ModelBundle,
    cond: Conditioning,
    uncond: Conditioning,
    seeds: Sequence[int],
    sampler: SamplerConfig,
    dtype: torch.dtype = torch.float32,
    on_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Latents [B, C, H, W] (float32, CPU) for ``cond[i]`` with seed ``seeds[i]``."""
    if len(cond) != len(seeds):
        raise ValueError(f"{len(cond)} conditionings but {len(seeds)} seeds")
    outputs = []
    for start in range(0, len(seeds), sampler.batch_size):
        stop = min(start + sampler.batch_size, len(seeds))
        outputs.append(_sample_batch(predict, bundle, cond.select(slice(start, stop)), uncond,
                                     seeds[start:stop], sampler, dtype))
        if on_batch is not None:
            on_batch(stop - start)
    return torch.cat(outputs)


def _sample_batch(predict, bundle, cond, uncond, seeds, sampler, dtype):
    device = bundle.device
    scheduler = bundle.sampler_scheduler(sampler)
    generators = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
    shape = bundle.latent_shape
    latents = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
    latents = latents * scheduler.init_noise_sigma
    guided = sampler.guidance_scale != 1.0
    both = Conditioning.cat([uncond.select([0] * len(cond)), cond]) if guided else cond
    kwargs = bundle.unet_kwargs(both, dtype)
    step_kwargs = {"generator": generators}
    if sampler.kind == "ddim":
        step_kwargs["eta"] = sampler.eta
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(torch.cat([latents, latents]) if guided else latents, t)
        timesteps = t.expand(model_in.shape[0]).to(device)
        prediction = predict(model_in.to(dtype), timesteps, **kwargs).float()
        if guided:
            uncond_pred, cond_pred = prediction.chunk(2)
            prediction = uncond_pred + sampler.guidance_scale * (cond_pred - uncond_pred)
        latents = scheduler.step(prediction, t, latents, **step_kwargs).prev_sample
    return latents.float().cpu()
