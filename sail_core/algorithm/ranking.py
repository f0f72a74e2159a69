"""Ranking estimators: how many (t, ε) draws a prompt's candidates get for their Eq. 8 rewards.

Chosen by ``reward.estimator`` from :data:`ESTIMATORS`:

* ``fixed``: K = ``reward.k_draws`` draws for every candidate, shared by a prompt's candidates
  (the paper's §4.1, :func:`sail_core.algorithm.reward.implicit_rewards`; same numbers as ever).
* ``sequential``: a prompt's candidates share blocks of ``reward.block_draws`` draws; after each block
  the prompt stops once its best and worst are settled (:mod:`sail_core.algorithm.sequential`), at
  most ``reward.k_max`` draws. Prompts still running are scored together: a queue of (candidate,
  draw) forwards over every unfinished prompt is cut into full batches, and a prompt's next block
  joins the queue as soon as its last block is scored, so the accelerator sees full batches until
  the last prompts finish. A draw depends only on its prompt's seed parts and its block index, and
  a decision only on its own prompt's draws, so batching never changes a prompt's result.

Both report the same :class:`Ranking`: per candidate the Eq. 8 reward over the draws it got (the
pair is its argmax/argmin, ``select_pair``), the number of draws, and per prompt why it stopped.
A draw of a candidate costs two UNet passes (policy and reference).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sail_core.algorithm.draws import DrawPlan, draw_block
from sail_core.algorithm.reward import (
    denoising_errors,
    implicit_rewards,
    mean_reward,
    per_draw_reward,
    timestep_range,
)
from sail_core.algorithm.sequential import STOP_FIXED, STOP_TIED, StoppingRule
from sail_core.config import RewardConfig
from sail_core.models.bundle import ModelBundle
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import Denoisers

PASSES_PER_DRAW = 2
"""ε_θ and ε_ref: one UNet pass each per (candidate, draw)."""

PassProgress = Callable[[int, int], None]
"""``(passes_done, passes_dropped)``: UNet passes just made, and passes counted in :func:`planned_passes`
that will not be made (a prompt that stopped before the cap)."""


@dataclass(frozen=True)
class Ranking:
    rewards: torch.Tensor
    """[M] float64: Eq. 8 over the draws the candidate got."""
    policy_error: torch.Tensor
    """[M] mean ‖ε − ε_θ‖² over those draws."""
    reference_error: torch.Tensor
    """[M] mean ‖ε − ε_ref‖² over those draws."""
    draws: torch.Tensor
    """[M] int64: draws the candidate got (equal within a prompt)."""
    stop_reasons: list[str]
    """Per group (prompt): ``fixed``, ``settled``, ``tied`` or ``cap``."""

    @property
    def unet_passes(self) -> int:
        return PASSES_PER_DRAW * int(self.draws.sum())


Estimator = Callable[
    [Denoisers, ModelBundle, torch.Tensor, Conditioning, Sequence[int], Sequence[object], RewardConfig,
     PassProgress | None],
    Ranking,
]


def max_draws(config: RewardConfig) -> int:
    return config.k_max if config.estimator == "sequential" else config.k_draws


def planned_passes(config: RewardConfig, n_candidates: int) -> int:
    """UNet passes of ``n_candidates`` candidates if every prompt used its maximum of draws."""
    return PASSES_PER_DRAW * n_candidates * max_draws(config)


def rank_rewards(denoisers: Denoisers, bundle: ModelBundle, latents: torch.Tensor, cond: Conditioning,
                 groups: Sequence[int], group_seeds: Sequence[object], config: RewardConfig,
                 on_passes: PassProgress | None = None) -> Ranking:
    """Rewards of ``latents[m]``, a candidate for prompt ``groups[m]`` (a row of ``cond``) whose draws
    ``group_seeds[groups[m]]`` names, by the estimator ``config.estimator``."""
    if len(latents) != len(groups):
        raise ValueError(f"{len(latents)} latents but {len(groups)} group ids")
    return ESTIMATORS[config.estimator](denoisers, bundle, latents, cond, groups, group_seeds, config, on_passes)


def fixed_ranking(denoisers: Denoisers, bundle: ModelBundle, latents: torch.Tensor, cond: Conditioning,
                  groups: Sequence[int], group_seeds: Sequence[object], config: RewardConfig,
                  on_passes: PassProgress | None = None) -> Ranking:
    on_batch = None if on_passes is None else (lambda items: on_passes(PASSES_PER_DRAW * items, 0))
    estimate = implicit_rewards(denoisers, bundle, latents, cond, groups, group_seeds, config, on_batch)
    return Ranking(
        rewards=estimate.rewards, policy_error=estimate.policy_error.mean(dim=1).double(),
        reference_error=estimate.reference_error.mean(dim=1).double(),
        draws=torch.full((len(latents),), config.k_draws, dtype=torch.int64),
        stop_reasons=[STOP_FIXED] * len(group_seeds),
    )


@dataclass
class _Prompt:
    members: list[int]
    blocks: list[np.ndarray]
    """Per finished block: [N] mean per-draw reward of each member."""
    policy_errors: list[torch.Tensor]
    reference_errors: list[torch.Tensor]
    """Per finished block: [N, B] errors."""
    reason: str | None = None


@dataclass
class _Block:
    timesteps: torch.Tensor
    noise: torch.Tensor
    policy: torch.Tensor
    reference: torch.Tensor
    missing: int


@torch.no_grad()
def sequential_ranking(denoisers: Denoisers, bundle: ModelBundle, latents: torch.Tensor, cond: Conditioning,
                       groups: Sequence[int], group_seeds: Sequence[object], config: RewardConfig,
                       on_passes: PassProgress | None = None) -> Ranking:
    """Blocks of shared draws per prompt until the stopping rule says its best and worst are settled."""
    plan = DrawPlan(config.block_draws, timestep_range(config, bundle), config.stratified, config.antithetic)
    rule = StoppingRule(config.confidence, config.indifference, config.k_max // config.block_draws)
    shape = tuple(latents.shape[1:])
    prompts = [_Prompt([], [], [], []) for _ in group_seeds]
    for m, g in enumerate(groups):
        prompts[g].members.append(m)
    open_blocks: dict[tuple[int, int], _Block] = {}
    queue: deque[tuple[int, int, int, int]] = deque()
    """(prompt, block, member position, draw in block): one row of a batch."""

    def start_block(g: int, b: int) -> None:
        timesteps, noise = draw_block(shape, plan, b, group_seeds[g])
        n = len(prompts[g].members)
        open_blocks[(g, b)] = _Block(timesteps, noise, torch.empty(n, plan.size), torch.empty(n, plan.size),
                                     n * plan.size)
        queue.extend((g, b, i, j) for i in range(n) for j in range(plan.size))

    def finish_block(g: int, b: int) -> None:
        block, prompt = open_blocks.pop((g, b)), prompts[g]
        prompt.policy_errors.append(block.policy)
        prompt.reference_errors.append(block.reference)
        prompt.blocks.append(per_draw_reward(block.policy, block.reference, config.beta).double().mean(dim=1).numpy())
        rewards = mean_reward(torch.cat(prompt.policy_errors, 1), torch.cat(prompt.reference_errors, 1), config.beta)
        prompt.reason = rule.decide(np.stack(prompt.blocks, axis=1), rewards.numpy())
        if prompt.reason is None:
            start_block(g, b + 1)
        elif on_passes is not None:
            unused = config.k_max - len(prompt.blocks) * plan.size
            on_passes(0, PASSES_PER_DRAW * len(prompt.members) * unused)

    for g, prompt in enumerate(prompts):
        if len(prompt.members) < 2:
            raise ValueError(f"prompt {group_seeds[g]!r} has {len(prompt.members)} candidate(s): ranking needs two")
        start_block(g, 0)
    while queue:
        chunk = [queue.popleft() for _ in range(min(config.batch_size, len(queue)))]
        blocks = [open_blocks[(g, b)] for g, b, _, _ in chunk]
        p_err, r_err = denoising_errors(
            denoisers, bundle, latents[[prompts[g].members[i] for g, _, i, _ in chunk]],
            torch.stack([blk.timesteps[j] for blk, (_, _, _, j) in zip(blocks, chunk)]),
            torch.stack([blk.noise[j] for blk, (_, _, _, j) in zip(blocks, chunk)]),
            cond.select([g for g, _, _, _ in chunk]))
        finished = []
        for row, (blk, (g, b, i, j)) in enumerate(zip(blocks, chunk)):
            blk.policy[i, j], blk.reference[i, j] = p_err[row], r_err[row]
            blk.missing -= 1
            if blk.missing == 0:
                finished.append((g, b))
        if on_passes is not None:
            on_passes(PASSES_PER_DRAW * len(chunk), 0)
        for g, b in finished:
            finish_block(g, b)
    return _collect(prompts, len(latents), config.beta)


def _collect(prompts: list[_Prompt], n_latents: int, beta: float) -> Ranking:
    rewards = torch.empty(n_latents, dtype=torch.float64)
    policy = torch.empty(n_latents, dtype=torch.float64)
    reference = torch.empty(n_latents, dtype=torch.float64)
    draws = torch.empty(n_latents, dtype=torch.int64)
    for prompt in prompts:
        p_err, r_err = torch.cat(prompt.policy_errors, 1), torch.cat(prompt.reference_errors, 1)
        rows = torch.tensor(prompt.members)
        rewards[rows] = mean_reward(p_err, r_err, beta)
        if prompt.reason == STOP_TIED:  # duplicates up to float noise: one reward, so no pair
            rewards[rows] = rewards[rows].mean()
        policy[rows], reference[rows] = p_err.mean(dim=1).double(), r_err.mean(dim=1).double()
        draws[rows] = p_err.shape[1]
    return Ranking(rewards, policy, reference, draws, [p.reason for p in prompts])


ESTIMATORS: dict[str, Estimator] = {"fixed": fixed_ranking, "sequential": sequential_ranking}
