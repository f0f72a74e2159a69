"""Optimizers and learning-rate schedules named by the config."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sail_core.config import TrainConfig
from sail_core.errors import InputError


def build_optimizer(params: Sequence[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    params = list(params)
    if not params:
        raise InputError("the model has no trainable parameters", parameter="model.train_mode")
    if config.optimizer == "adamw":
        fused = all(p.is_cuda for p in params)
        return torch.optim.AdamW(params, lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_eps,
                                 weight_decay=config.weight_decay, fused=fused or None)
    if config.optimizer == "adafactor":
        from transformers.optimization import Adafactor

        # Diffusion-DPO's SDXL setting: a fixed learning rate, no relative-step or parameter scaling
        return Adafactor(params, lr=config.learning_rate, scale_parameter=False, relative_step=False,
                         warmup_init=False, weight_decay=config.weight_decay)
    if config.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise InputError("optimizer 'adamw8bit' needs bitsandbytes (pip install 'sail[gpu]')",
                             parameter="train.optimizer") from exc
        return bnb.optim.AdamW8bit(params, lr=config.learning_rate, betas=config.adam_betas,
                                   eps=config.adam_eps, weight_decay=config.weight_decay)
    raise InputError(f"unknown optimizer {config.optimizer!r}", parameter="train.optimizer")


def build_lr_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig,
                      total_steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    from diffusers.optimization import get_scheduler

    return get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=config.warmup_steps,
                         num_training_steps=total_steps)
