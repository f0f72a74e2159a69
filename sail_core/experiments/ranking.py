"""How many UNet passes does self-ranking need (issue 11)?

For ranking settings (``reward.*`` overrides: fixed K, sequential stopping at some confidence, with
or without stratified timesteps and antithetic noise), on one set of round-1 candidates of the
iteration-0 model: the UNet passes per candidate each setting spends, how often its chosen best has
a higher judge score (the embedded world's hidden utility) than its chosen worst, and the variance of
its reward differences. No training is needed beyond iteration 0: :func:`round_one_candidates` runs
the seed set, seed DPO, round 1's prompts and its generation through the stage runner, with the
same keys the SAIL flow gives them (a later arm of the same seed reuses them).

Settings are *replayed* (:func:`block_errors`, :func:`replay`): the settings that draw from the same
stream of blocks (same block size, stratification and antithetic pairs; common random numbers) share
one computation of every candidate's denoising errors on as many blocks as the most demanding of them
needs, and each setting's estimator is then run on those errors: the sequential rule
(``StoppingRule.decide`` after every block, exactly as :func:`sail_core.algorithm.ranking.sequential_ranking`
calls it, on the same draws), or a fixed K on the stream's first K draws. Settings without
stratification or antithetic pairs all replay on one plain stream (blocks of 2 uniform draws): the
fixed K takes its first K draws, a sequential rule groups them by its block size. Plain draws are
independent and identically distributed, so this is the estimators' distribution of draws, though
not their seeding where the block size differs from the stream's (fixed K seeds its draws apart).
Each setting's passes are those it would have made, not those the shared computation did.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from sail_core.algorithm.draws import DrawPlan, draw_block
from sail_core.algorithm.ranking import PASSES_PER_DRAW, rank_rewards
from sail_core.algorithm.reward import denoising_errors, mean_reward, per_draw_reward, timestep_range
from sail_core.algorithm.selection import select_pair
from sail_core.algorithm.sequential import STOP_CAP, STOP_FIXED, STOP_SETTLED, STOP_TIED, StoppingRule
from sail_core.config import RewardConfig, SailConfig
from sail_core.images import tensor_to_uint8
from sail_core.io.tables import read_table
from sail_core.io.tensors import ShardReader, read_tensors
from sail_core.models.bundle import ModelBundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import Denoisers, load_for_inference
from sail_core.run.layout import RunLayout
from sail_core.run.lineage import base_model
from sail_core.run.records import CandidatesRecord, PromptsRecord
from sail_core.run.runner import run_stage
from sail_core.stages import GENERATE, PROMPTS, SEED, TRAIN, GenerateInputs, PromptsInputs, TrainInputs

JudgeFn = Callable[[np.ndarray, Sequence[str]], np.ndarray]
"""Scores uint8 images [n, H, W, 3] for their prompts (higher is better)."""


class RankingSetting(BaseModel):
    """A named ranking estimator: overrides of ``reward.*`` (field names without the ``reward.``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    reward: dict[str, Any] = {}

    def config(self, base: RewardConfig) -> RewardConfig:
        return RewardConfig(**{**base.model_dump(), **self.reward})


@dataclass(frozen=True)
class CandidateSet:
    """A round's candidates with the models that generated them and judge them."""

    run_dir: str
    prompts: PromptsRecord
    candidates: CandidatesRecord
    policy: UnetCheckpoint
    reference: UnetCheckpoint


def round_one_candidates(config: SailConfig, run_dir: str | Path) -> CandidateSet:
    """Round 1's candidates of the iteration-0 model (seed DPO), judged against the base (its judge
    reference in round 1 whatever ``reward.reference`` says), made or reused in ``run_dir``."""
    layout = RunLayout(run_dir)
    seed = run_stage(SEED, config, layout, SEED.inputs())
    base = base_model(config)
    iteration0 = run_stage(TRAIN, config, layout, TrainInputs(round_index=0, pairs=seed.pairs, init=base)).model
    prompts = run_stage(PROMPTS, config, layout, PromptsInputs(round_index=1, seed=seed))
    candidates = run_stage(GENERATE, config, layout, GenerateInputs(prompts=prompts, policy=iteration0))
    return CandidateSet(str(layout.root), prompts, candidates, iteration0.checkpoint, base.checkpoint)


def best_worst_wins(rewards: Sequence[float], members: Sequence[Sequence[int]], scores: np.ndarray) -> list[float]:
    """Per prompt, 1 if its reward-best candidate has a higher judge score than the reward-worst, else 0;
    a prompt without a pair (tied rewards) or with tied scores counts ½."""
    wins = []
    for rows in members:
        pair = select_pair([rewards[i] for i in rows], "best_worst", "agreement")
        gap = 0.0 if pair is None else scores[rows[pair.winner]] - scores[rows[pair.loser]]
        wins.append(0.5 if gap == 0 else float(gap > 0))
    return wins



PLAIN_STREAM_BLOCK = 2
"""Block size of the plain stream (uniform t, independent ε) that every plain setting replays on."""


def draw_stream(reward: RewardConfig, t_range: tuple[int, int]) -> tuple[DrawPlan, int] | None:
    """The block stream a setting draws from and how many of its blocks it may use, or None where it
    cannot be replayed (draws not shared by a prompt's candidates)."""
    if not reward.common_random_numbers:
        return None
    most = reward.k_max if reward.estimator == "sequential" else reward.k_draws
    if not (reward.stratified or reward.antithetic):
        # plain draws are iid: a fixed K takes the stream's first K, a sequential rule groups them by its
        # block size (the same draws as the estimator's where that size is the stream's)
        return DrawPlan(PLAIN_STREAM_BLOCK, t_range), -(-most // PLAIN_STREAM_BLOCK)
    if reward.estimator == "sequential":
        return DrawPlan(reward.block_draws, t_range, reward.stratified, reward.antithetic), \
            reward.k_max // reward.block_draws
    return DrawPlan(reward.k_draws, t_range, reward.stratified, reward.antithetic), 1  # fixed K: one block of K


@torch.no_grad()
def block_errors(denoisers: Denoisers, bundle: ModelBundle, latents: torch.Tensor, cond: Conditioning,
                 groups: Sequence[int], group_seeds: Sequence[object], plan: DrawPlan, n_blocks: int,
                 batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[M, n_blocks · plan.size] ‖ε − ε_θ‖² and ‖ε − ε_ref‖² of every candidate on its prompt's first
    ``n_blocks`` blocks (``draw_block``, the draws the estimators make)."""
    shape = tuple(latents.shape[1:])
    draws: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def draw(g: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        if (g, b) not in draws:
            draws[(g, b)] = draw_block(shape, plan, b, group_seeds[g])
        return draws[(g, b)]

    width = n_blocks * plan.size
    items = [(m, b, j) for m in range(len(latents)) for b in range(n_blocks) for j in range(plan.size)]
    policy, reference = torch.empty(len(latents), width), torch.empty(len(latents), width)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        p_err, r_err = denoising_errors(
            denoisers, bundle, latents[[m for m, _, _ in chunk]],
            torch.stack([draw(groups[m], b)[0][j] for m, b, j in chunk]),
            torch.stack([draw(groups[m], b)[1][j] for m, b, j in chunk]), cond.select([groups[m] for m, _, _ in chunk]))
        for row, (m, b, j) in enumerate(chunk):
            policy[m, b * plan.size + j], reference[m, b * plan.size + j] = p_err[row], r_err[row]
    return policy, reference


def replay(reward: RewardConfig, policy: torch.Tensor, reference: torch.Tensor,
           members: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A setting's (rewards [M], draws [M], stop reason per prompt) on the errors of its stream's blocks."""
    rewards = torch.empty(len(policy), dtype=torch.float64)
    draws = torch.empty(len(policy), dtype=torch.int64)
    if reward.estimator != "sequential":
        k = reward.k_draws
        rewards[:] = mean_reward(policy[:, :k], reference[:, :k], reward.beta)
        draws[:] = k
        return rewards, draws, [STOP_FIXED] * len(members)
    size = reward.block_draws
    rule = StoppingRule(reward.confidence, reward.indifference, reward.k_max // size)
    reasons = []
    for rows in members:
        p, r = policy[list(rows)], reference[list(rows)]
        blocks, reason, n = [], None, 0
        while reason is None:  # what sequential_ranking's finish_block does after each block
            n += 1
            blocks.append(per_draw_reward(p[:, (n - 1) * size : n * size], r[:, (n - 1) * size : n * size],
                                          reward.beta).double().mean(dim=1).numpy())
            estimate = mean_reward(p[:, : n * size], r[:, : n * size], reward.beta)
            reason = rule.decide(np.stack(blocks, axis=1), estimate.numpy())
        if reason == STOP_TIED:  # as sequential_ranking does: duplicates get one reward
            estimate = estimate.mean().expand_as(estimate)
        rewards[list(rows)], draws[list(rows)] = estimate, n * size
        reasons.append(reason)
    return rewards, draws, reasons


def ranking_agreement(config: SailConfig, bundle: ModelBundle, candidate_set: CandidateSet, judge: JudgeFn,
                      settings: Sequence[RankingSetting], repeats: int = 3,
                      replayed: bool = False) -> list[dict[str, Any]]:
    """One row per setting: means over ``repeats`` independent sets of draws of the passes per
    candidate, the agreement (:func:`best_worst_wins`, averaged) and the fractions of prompts that stopped
    settled, tied or at the cap; ``prompt_agreement`` the agreement of each prompt (in candidate order,
    mean over repeats); ``agreement_spread`` is the agreement's sd over repeats, and
    ``diff_variance`` the variance over repeats of r_A − r_B for the disjoint candidate pairs (0, 1),
    (2, 3), ... of every prompt, averaged over them (a measure of the draws' noise that no judge
    enters). ``replayed``: settings that can share their draws are replayed (module docstring); the
    others, and all without it, run their estimator (``rank_rewards``)."""
    run_dir = candidate_set.run_dir
    table = read_table(candidate_set.candidates.candidates.resolve(run_dir)).to_pydict()
    latents = ShardReader(run_dir, "latents").gather(table["latent_file"], table["latent_row"]).float()
    scores = judge(tensor_to_uint8(bundle.codec.decode(latents.to(bundle.device))), table["prompt"])
    prompt_ids = list(dict.fromkeys(table["prompt_id"]))
    group = {pid: g for g, pid in enumerate(prompt_ids)}
    groups = [group[pid] for pid in table["prompt_id"]]
    members = [[i for i, g in enumerate(groups) if g == j] for j in range(len(prompt_ids))]
    couples = [(rows[a], rows[a + 1]) for rows in members for a in range(0, len(rows) - 1, 2)]
    conds = Conditioning.from_tensors(read_tensors(candidate_set.prompts.conds.resolve(run_dir)))
    cond = conds.select([table["cond_row"][m[0]] for m in members])
    denoisers = load_for_inference(config.model, run_dir, candidate_set.policy, candidate_set.reference,
                                   bundle.device)
    configs = [setting.config(config.reward) for setting in settings]
    t_range = timestep_range(config.reward, bundle)
    streams = [draw_stream(reward, t_range) if replayed else None for reward in configs]
    blocks_needed: dict[DrawPlan, int] = {}
    for stream in streams:
        if stream is not None:
            blocks_needed[stream[0]] = max(blocks_needed.get(stream[0], 0), stream[1])
    runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in settings}
    for repeat in range(repeats):
        seeds = [("agreement", repeat, pid) for pid in prompt_ids]
        errors = {plan: block_errors(denoisers, bundle, latents, cond, groups, seeds, plan, n, config.reward.batch_size)
                  for plan, n in blocks_needed.items()}
        for setting, reward, stream in zip(settings, configs, streams):
            if stream is None:
                ranking = rank_rewards(denoisers, bundle, latents, cond, groups, seeds, reward)
                rewards, draws, reasons = ranking.rewards, ranking.draws, ranking.stop_reasons
            else:
                rewards, draws, reasons = replay(reward, *errors[stream[0]], members)
            r = rewards.tolist()
            wins = best_worst_wins(r, members, scores)
            runs[setting.name].append({
                "passes_per_candidate": PASSES_PER_DRAW * int(draws.sum()) / len(latents),
                "agreement": float(np.mean(wins)),
                "wins": wins,
                "settled": reasons.count(STOP_SETTLED) / len(reasons),
                "tied": reasons.count(STOP_TIED) / len(reasons),
                "cap": reasons.count(STOP_CAP) / len(reasons),
                "diffs": [r[a] - r[b] for a, b in couples],
            })
    rows = []
    for setting in settings:
        done = runs[setting.name]
        diffs = torch.tensor([run.pop("diffs") for run in done], dtype=torch.float64)
        wins = np.mean([run.pop("wins") for run in done], axis=0)
        row = {"setting": setting.name, **{k: float(np.mean([run[k] for run in done])) for k in done[0]}}
        row["agreement_spread"] = float(np.std([run["agreement"] for run in done]))
        row["diff_variance"] = float(diffs.var(dim=0).mean()) if repeats > 1 else float("nan")
        row["repeats"] = repeats
        row["prompt_agreement"] = wins.tolist()  # per prompt, for paired comparisons between settings
        rows.append(row)
    return rows
