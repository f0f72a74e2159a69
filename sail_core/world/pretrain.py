"""Pretraining the world's base model on rendered "web data", reproducibly from a seed.

Plain denoising training (ε-prediction MSE) of the UNet and the text encoder together, on fresh
batches from :func:`sail_core.world.render.sample_batch`; 10% of prompts are dropped to "" so the
model also learns the unconditional distribution that classifier-free guidance needs. An
exponential moving average of the weights is what gets saved. The base model learns the broad
distribution of web data: every size, position, noise level and blur, since captions never say
which the hidden human prefers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from sail_core.algorithm.noising import add_noise
from sail_core.models.tokenizer import cached_clip_tokenizer
from sail_core.world.model import TEXT_LENGTH, build_scheduler, build_text_encoder, build_unet, save_world_model
from sail_core.world.render import sample_batch


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 3000
    batch_size: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.999
    p_uncond: float = 0.1
    seed: int = 0
    threads: int = 2


class Ema:
    def __init__(self, modules: list[torch.nn.Module], decay: float) -> None:
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))  # short memory early, while weights move fast
        for shadow, param in zip(self.shadow, self.params):
            shadow.lerp_(param.detach(), 1 - decay)

    @torch.no_grad()
    def copy_to_params(self) -> None:
        for shadow, param in zip(self.shadow, self.params):
            param.copy_(shadow)


def pretrain(config: PretrainConfig, out_dir: str | Path, tokenizer_dir: str | Path,
             on_step: Callable[[int, float], None] | None = None, overwrite: bool = False) -> Path:
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    unet, text_encoder, scheduler = build_unet(), build_text_encoder(), build_scheduler()
    tokenizer = cached_clip_tokenizer(str(tokenizer_dir), TEXT_LENGTH)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / config.warmup_steps) * (
        0.5 * (1 + math.cos(math.pi * s / config.steps))))
    ema = Ema([unet, text_encoder], config.ema_decay)
    generator = torch.Generator().manual_seed(config.seed)
    started = time.time()
    for step in range(config.steps):
        prompts, images = sample_batch(rng, config.batch_size)
        prompts = ["" if u < config.p_uncond else p for p, u in zip(prompts, rng.random(len(prompts)))]
        ids = tokenizer(prompts, padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                        return_tensors="pt").input_ids
        x0 = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(x0),), generator=generator)
        prediction = unet(add_noise(scheduler, x0, noise, timesteps), timesteps,
                          text_encoder(ids).last_hidden_state).sample
        loss = (prediction - noise).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        ema.update(step)
        if on_step is not None:
            on_step(step + 1, loss.item())
    ema.copy_to_params()
    provenance = {"command": "sail world pretrain", "config": asdict(config), "torch": torch.__version__,
                  "seconds": round(time.time() - started, 1)}
    return save_world_model(out_dir, unet.eval(), text_encoder.eval(), provenance, overwrite=overwrite)
