"""SAIL's implicit self-reward (paper Eq. 8-10).

    r(x) = −β/2 · E_{t,ε} [ ‖ε − ε_θ(x_t, y, t)‖² − ‖ε − ε_ref(x_t, y, t)‖² ]

estimated with K draws of (t, ε) per candidate; p(A ≻ B | y) = σ(r_A − r_B). ‖·‖² is the mean over
channels and pixels, as in Diffusion-DPO's loss, so r_w − r_l is exactly that loss's margin.

Common random numbers: the N candidates of one prompt share the same K draws (``draws``: also
stratified timesteps and antithetic noise). Ranking only needs
reward *differences* within a prompt, and with shared draws the draw-to-draw noise (most of it from
t: errors at t≈999 and t≈10 differ by orders of magnitude) cancels in r_A − r_B.

All (candidate, draw) forwards are flattened and run in large batches through the policy and then
the reference; for LoRA both are views of one UNet, switched once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from sail_core.algorithm.draws import DrawPlan, draw_block, draw_noise
from sail_core.algorithm.noising import add_noise, per_sample_mse, training_target
from sail_core.config import RewardConfig
from sail_core.models.bundle import ModelBundle
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import Denoisers

__all__ = ["RewardEstimate", "denoising_errors", "draw_noise", "implicit_rewards", "mean_reward", "per_draw_reward",
           "preference_probability", "timestep_range"]


@dataclass(frozen=True)
class RewardEstimate:
    rewards: torch.Tensor
    """[M] r(x) per candidate."""
    policy_error: torch.Tensor
    """[M, K] ‖ε − ε_θ‖² per draw."""
    reference_error: torch.Tensor
    """[M, K] ‖ε − ε_ref‖² per draw."""


@torch.no_grad()
def implicit_rewards(
    denoisers: Denoisers,
    bundle: ModelBundle,
    latents: torch.Tensor,
    cond: Conditioning,
    groups: Sequence[int],
    group_seeds: Sequence[object],
    config: RewardConfig,
    on_batch: Callable[[int], None] | None = None,
) -> RewardEstimate:
    """Rewards of ``latents[m]``, a sample for prompt ``groups[m]`` (a row of ``cond``).

    ``group_seeds[g]`` names prompt g's draws (e.g. its prompt id), so a prompt's rewards do not
    depend on which other prompts are scored with it.
    """
    if len(latents) != len(groups):
        raise ValueError(f"{len(latents)} latents but {len(groups)} group ids")
    k = config.k_draws
    t_range = timestep_range(config, bundle)
    shape = tuple(latents.shape[1:])
    # the paper's uniform draws keep their historical seeding; stratified/antithetic ones are one block of K
    plan = DrawPlan(k, t_range, config.stratified, config.antithetic) if config.stratified or config.antithetic \
        else None
    draws: dict[object, tuple[torch.Tensor, torch.Tensor]] = {}

    def draws_for(m: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = groups[m]
        key = g if config.common_random_numbers else (g, m)
        if key not in draws:
            parts = (group_seeds[g],) if config.common_random_numbers else (group_seeds[g], "candidate", m)
            draws[key] = draw_noise(shape, k, t_range, *parts) if plan is None else draw_block(shape, plan, 0, *parts)
        return draws[key]

    items = [(m, j) for m in range(len(latents)) for j in range(k)]
    policy_err = torch.empty(len(latents), k)
    reference_err = torch.empty(len(latents), k)
    for start in range(0, len(items), config.batch_size):
        chunk = items[start : start + config.batch_size]
        ms = [m for m, _ in chunk]
        timesteps = torch.stack([draws_for(m)[0][j] for m, j in chunk])
        noise = torch.stack([draws_for(m)[1][j] for m, j in chunk])
        p_err, r_err = denoising_errors(denoisers, bundle, latents[ms], timesteps, noise,
                                        cond.select([groups[m] for m in ms]))
        for row, (m, j) in enumerate(chunk):
            policy_err[m, j] = p_err[row]
            reference_err[m, j] = r_err[row]
        if on_batch is not None:
            on_batch(len(chunk))
    return RewardEstimate(mean_reward(policy_err, reference_err, config.beta), policy_err, reference_err)


def timestep_range(config: RewardConfig, bundle: ModelBundle) -> tuple[int, int]:
    return config.timestep_range or (0, bundle.num_train_timesteps)


def denoising_errors(denoisers: Denoisers, bundle: ModelBundle, latents: torch.Tensor, timesteps: torch.Tensor,
                     noise: torch.Tensor, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
    """‖ε − ε_θ(x_t, y, t)‖² and ‖ε − ε_ref(x_t, y, t)‖² of one batch (row i: ``latents[i]`` noised
    with ``timesteps[i]``, ``noise[i]``, conditioned on ``cond[i]``), on the CPU: two UNet passes a row."""
    x0 = latents.to(bundle.device)
    timesteps, noise = timesteps.to(bundle.device), noise.to(bundle.device)
    noisy = add_noise(bundle.noise_scheduler, x0, noise, timesteps)
    target = training_target(bundle.noise_scheduler, x0, noise, timesteps)
    kwargs = bundle.unet_kwargs(cond, denoisers.dtype)
    p_err = per_sample_mse(denoisers.policy(noisy, timesteps, **kwargs), target).cpu()
    r_err = per_sample_mse(denoisers.reference(noisy, timesteps, **kwargs), target).cpu()
    return p_err, r_err


def per_draw_reward(policy_error: torch.Tensor, reference_error: torch.Tensor, beta: float) -> torch.Tensor:
    """One draw's term of Eq. 8: −β/2 · (‖ε − ε_θ‖² − ‖ε − ε_ref‖²); the reward is its mean over draws."""
    return -0.5 * beta * (policy_error - reference_error)


def mean_reward(policy_error: torch.Tensor, reference_error: torch.Tensor, beta: float) -> torch.Tensor:
    """Eq. 8 estimated over the draws on the last axis (float64): what every estimator reports and ranks by."""
    return (-0.5 * beta * (policy_error - reference_error).mean(dim=-1)).double()


def preference_probability(reward_a: torch.Tensor | float, reward_b: torch.Tensor | float) -> torch.Tensor:
    """p(A ≻ B | y) = σ(r_A − r_B)  (Eq. 4/9)."""
    difference = torch.as_tensor(reward_a, dtype=torch.float64) - torch.as_tensor(reward_b, dtype=torch.float64)
    return torch.sigmoid(difference)
