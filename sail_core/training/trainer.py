"""The Diffusion-DPO training loop, on accelerate.

Determinism is by construction, which is what makes resuming exact: optimizer step ``s`` trains on
pairs ``order[s·B : (s+1)·B]`` of a seeded permutation of the pair set (B = effective batch), and the
timesteps and noise of micro-batch ``m`` of step ``s`` come from a generator seeded with
``(seed, s, m, process)``. Nothing depends on how many steps ran before in this process, so a
run resumed from the checkpoint of step ``s`` continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from sail_core.algorithm.dpo_loss import dpo_loss
from sail_core.algorithm.noising import add_noise, per_sample_mse, training_target
from sail_core.config import TrainConfig
from sail_core.errors import NonFiniteLossError, TrainingDivergedError
from sail_core.models.bundle import ModelBundle
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import Denoisers
from sail_core.seeding import derive_seed, generator
from sail_core.training.divergence import Divergence, DivergenceGuard, weight_norm
from sail_core.training.optim import build_lr_schedule, build_optimizer
from sail_core.training.pair_dataset import PairDataset
from sail_core.training.step_checkpoints import (
    TrainingState,
    list_checkpoints,
    load_checkpoint,
    newest_good_checkpoint,
    save_checkpoint,
    set_aside_from,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""``on_step(step, total_steps, metrics)`` after every optimizer step."""


@dataclass(frozen=True)
class TrainResult:
    steps: int
    resumed_from: int
    metrics: list[dict[str, float]]
    damaged: tuple[str, ...] = ()
    """One line per damaged step checkpoint that was passed over (``Resumable.describe``)."""


def total_steps(config: TrainConfig, n_pairs: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(config.epochs * n_pairs / config.effective_batch_pairs))


def pair_order(n_pairs: int, n_needed: int, seed: int) -> np.ndarray:
    """Epoch-wise seeded permutations of the pairs, concatenated to ``n_needed`` indices."""
    epochs = -(-n_needed // n_pairs)
    return np.concatenate([np.random.default_rng(derive_seed("pair-order", seed, e)).permutation(n_pairs)
                           for e in range(epochs)])[:n_needed]


class DpoTrainer:
    def __init__(
        self,
        bundle: ModelBundle,
        denoisers: Denoisers,
        dataset: PairDataset,
        config: TrainConfig,
        steps_dir: str | Path,
        accelerator: Accelerator | None = None,
        on_step: ProgressFn | None = None,
        on_checkpoint: Callable[[Path], None] | None = None,
    ) -> None:
        from accelerate import Accelerator

        if len(dataset) == 0:
            raise ValueError("no pairs to train on")
        self.bundle = bundle
        self.denoisers = denoisers
        self.dataset = dataset
        self.config = config
        self.steps_dir = Path(steps_dir)
        self.accelerator = accelerator or Accelerator(mixed_precision=config.mixed_precision,
                                                      cpu=bundle.device.type == "cpu")
        self.on_step = on_step
        self.on_checkpoint = on_checkpoint
        """Called with each step checkpoint once it is on disk (e.g. to push it to the run's store)."""
        world = self.accelerator.num_processes
        per_process = config.effective_batch_pairs // world
        if per_process * world != config.effective_batch_pairs or per_process % config.micro_batch_pairs:
            raise ValueError(f"effective batch {config.effective_batch_pairs} does not split into "
                             f"{world} processes × micro-batches of {config.micro_batch_pairs}")
        self.accumulation = per_process // config.micro_batch_pairs
        self.total_steps = total_steps(config, len(dataset))
        if config.gradient_checkpointing:
            denoisers.policy_unet.enable_gradient_checkpointing()
        self.optimizer = build_optimizer(denoisers.trainable_parameters(), config)
        self.schedule = build_lr_schedule(self.optimizer, config, self.total_steps)
        self.policy_module, self.optimizer = self.accelerator.prepare(denoisers.policy_unet, self.optimizer)
        # the policy's forward must go through the prepared (e.g. DDP-wrapped) module to sync gradients
        denoisers.policy_module = self.policy_module
        self.order = pair_order(len(dataset), self.total_steps * config.effective_batch_pairs, config.seed)
        self.damaged: tuple[str, ...] = ()
        self.guard = DivergenceGuard(config.divergence_loss_spike, config.divergence_grad_spike,
                                     config.divergence_weight_growth)

    def _micro_indices(self, step: int, micro: int) -> list[int]:
        cfg = self.config
        start = step * cfg.effective_batch_pairs + (
            self.accelerator.process_index * self.accumulation + micro) * cfg.micro_batch_pairs
        return self.order[start : start + cfg.micro_batch_pairs].tolist()

    def _micro_step(self, step: int, micro: int) -> dict[str, torch.Tensor]:
        bundle, device = self.bundle, self.bundle.device
        winners, losers, cond = self.dataset.batch(self._micro_indices(step, micro))
        n = len(winners)
        g = generator("dpo-noise", self.config.seed, step, micro, self.accelerator.process_index)
        timesteps = torch.randint(0, bundle.num_train_timesteps, (n,), generator=g)
        noise = torch.randn(winners.shape, generator=g)
        # winner and loser share t and ε, as in the reference implementation
        latents = torch.cat([winners, losers]).to(device)
        noise, timesteps = torch.cat([noise, noise]).to(device), torch.cat([timesteps, timesteps]).to(device)
        noisy = add_noise(bundle.noise_scheduler, latents, noise, timesteps)
        target = training_target(bundle.noise_scheduler, latents, noise, timesteps)
        kwargs = bundle.unet_kwargs(Conditioning.cat([cond, cond]), torch.float32)
        # the reference first: with LoRA both are views of one UNet, and gradient checkpointing reruns the
        # policy's forward during backward, which must find the policy's adapters still active
        reference = self.denoisers.reference(noisy, timesteps, **kwargs)
        with self.accelerator.autocast():
            prediction = self.denoisers.policy(noisy, timesteps, **kwargs)
        mse_w, mse_l = per_sample_mse(prediction, target).chunk(2)
        ref_w, ref_l = per_sample_mse(reference, target).chunk(2)
        terms = dpo_loss(mse_w, mse_l, ref_w, ref_l, self.config.beta)
        # a non-finite loss is not raised here: on one of several processes that would leave the others
        # waiting in backward; its gradients are non-finite too, and the step's check sees it everywhere
        self.accelerator.backward(terms.loss / self.accumulation)
        return {
            "loss": terms.loss.detach(), "implicit_accuracy": terms.implicit_accuracy,
            "reward_margin": terms.inside.mean(), "model_mse": terms.model_mse, "ref_mse": terms.ref_mse,
        }

    def _resume(self) -> tuple[int, list[dict[str, float]]]:
        """From the newest step checkpoint whose files have their recorded hashes (a damaged newer one is
        set aside and logged, never resumed from silently)."""
        resumable = newest_good_checkpoint(self.steps_dir, set_aside=self.accelerator.is_main_process)
        self.damaged = tuple(resumable.describe())
        for line in self.damaged:
            log.warning("%s", line)
        if resumable.checkpoint is None:
            return 0, []
        state = load_checkpoint(resumable.checkpoint, self.denoisers.policy_unet, self.optimizer)
        self.schedule.load_state_dict(state.lr_schedule)
        return state.step, state.metrics

    def _diverged(self, divergence: Divergence) -> TrainingDivergedError:
        """Set aside the checkpoints holding suspect weights; the error says which one is kept and why."""
        moved = set_aside_from(self.steps_dir, divergence.weights_of_step) if self.accelerator.is_main_process else []
        kept = list_checkpoints(self.steps_dir)
        trust = (f"kept {kept[-1].name} in {self.steps_dir}, the newest checkpoint whose weights a later step "
                 "ran on without trouble; a rerun resumes from it" if kept else
                 "no checkpoint is trusted: a rerun starts from the initial weights")
        aside = f"; set aside {', '.join(p.name for p in moved)} in {moved[0].parent}" if moved else ""
        error = NonFiniteLossError if divergence.reason.startswith("non-finite DPO loss") else TrainingDivergedError
        return error(f"training diverged at step {divergence.step}: {divergence.reason}. The weights of step "
                     f"{divergence.weights_of_step} are not trusted: {trust}{aside}. Lower the learning rate.")

    def optimizer_step(self, step: int) -> dict[str, float]:
        """Optimizer step ``step`` (0-based): its micro-batches' forward and backward, the gradient norm
        (clipped), the divergence checks, the update; returns its metrics, averaged over micro-batches
        and processes. Raises :class:`TrainingDivergedError` where the guard sees a divergence."""
        params = self.denoisers.trainable_parameters()
        parts = []
        for micro in range(self.accumulation):
            last = micro == self.accumulation - 1
            with self.accelerator.no_sync(self.policy_module) if not last else contextlib.nullcontext():
                parts.append(self._micro_step(step, micro))
        # the norm before clipping, over every process's gradients (clipping to inf only measures it)
        grad_norm = self.accelerator.clip_grad_norm_(params, self.config.max_grad_norm or math.inf)
        metrics = {k: self.accelerator.gather(torch.stack([p[k] for p in parts]).mean()).mean().item()
                   for k in parts[0]}
        metrics["grad_norm"] = float(grad_norm)
        # under fp16 loss scaling an overflowing step has inf gradients and is skipped: not a divergence
        overflow = self.accelerator.scaler is not None and not math.isfinite(metrics["grad_norm"])
        problem = self.guard.check_step(step + 1, metrics["loss"], None if overflow else metrics["grad_norm"])
        if problem is not None:
            raise self._diverged(problem)
        self.optimizer.step()
        self.schedule.step()
        self.optimizer.zero_grad(set_to_none=True)
        problem = self.guard.check_weights(step + 1, weight_norm(params))
        if problem is not None:
            raise self._diverged(problem)
        metrics.update(step=step + 1, lr=self.schedule.get_last_lr()[0])
        return metrics

    def train(self) -> TrainResult:
        params = list(self.denoisers.trainable_parameters())
        self.guard.initial_weight_norm = weight_norm(params)  # the init's, before a checkpoint replaces it
        start, history = self._resume()
        self.guard.resume(history)
        self.policy_module.train()
        for step in range(start, self.total_steps):
            metrics = self.optimizer_step(step)
            history.append(metrics)
            if self.on_step is not None:
                self.on_step(step + 1, self.total_steps, metrics)
            done = step + 1 == self.total_steps
            if ((step + 1) % self.config.checkpoint_every == 0 or done) and self.accelerator.is_main_process:
                saved = save_checkpoint(self.steps_dir, self.denoisers.policy_unet, self.optimizer,
                                        TrainingState(step + 1, self.schedule.state_dict(), history),
                                        keep=self.config.keep_checkpoints)
                if self.on_checkpoint is not None:
                    self.on_checkpoint(saved)
        return TrainResult(steps=self.total_steps, resumed_from=start, metrics=history, damaged=self.damaged)
