"""Analyses over a run's artifacts (no training): how good is the model as its own judge?

* :func:`self_reward_accuracy`: the implicit reward's agreement with held-out human labels (the
  paper's Fig. 5): for human pairs the seed set did not use, how often r(winner) > r(loser).
* :func:`selection_agreement`: for a round's candidates, how often the self-ranked best candidate
  has a higher judge score (the embedded world's hidden utility) than the self-ranked worst, for a
  given number of draws K with and without common random numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sail_core.algorithm.reward import implicit_rewards
from sail_core.algorithm.selection import select_pair
from sail_core.config import RewardConfig, SailConfig
from sail_core.data.pickapic import LabelledPair, read_pair_images, scan_labels, split_seed
from sail_core.images import decode_image, pil_to_tensor, tensor_to_uint8
from sail_core.io.tables import read_table
from sail_core.io.tensors import ShardReader, read_tensors
from sail_core.models.bundle import ModelBundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import load_for_inference
from sail_core.run.records import CandidatesRecord, PromptsRecord
from sail_core.stages.seed import seed_files

JudgeFn = Callable[[np.ndarray, Sequence[str]], np.ndarray]
"""Scores uint8 images [n, H, W, 3] for their prompts (higher is better)."""


@dataclass(frozen=True)
class HumanPairs:
    prompts: list[str]
    winners: torch.Tensor
    losers: torch.Tensor


def held_out_human_pairs(config: SailConfig, bundle: ModelBundle, limit: int, seed: int = 0) -> HumanPairs:
    """Decided human pairs outside the run's seed subset (at most ``limit``, a seeded choice), encoded."""
    files = seed_files(config)
    split = split_seed(files, config.seed_data.seed_size, config.seed_data.seed)
    used = {(p.file, p.row) for p in split.seed}
    decided = [p for p in scan_labels(files)[0] if (p.file, p.row) not in used]
    order = np.random.default_rng(seed).permutation(len(decided))[:limit]
    chosen: list[LabelledPair] = sorted((decided[i] for i in order), key=lambda p: (p.file, p.row))
    winners, losers, prompts = [], [], []
    for pair, winner, loser in read_pair_images(chosen):
        winners.append(decode_image(winner, file=pair.file, row=pair.row))
        losers.append(decode_image(loser, file=pair.file, row=pair.row))
        prompts.append(pair.caption)
    encode = lambda images: bundle.codec.encode(pil_to_tensor(images, bundle.config.resolution)).cpu()  # noqa: E731
    return HumanPairs(prompts, encode(winners), encode(losers))


def self_reward_accuracy(
    config: SailConfig, bundle: ModelBundle, run_dir: str, model: UnetCheckpoint, reference: UnetCheckpoint,
    pairs: HumanPairs, k_draws: int | None = None,
) -> float:
    """Fraction of held-out human pairs whose winner the model's implicit reward prefers."""
    denoisers = load_for_inference(config.model, run_dir, model, reference, bundle.device)
    reward = config.reward.model_copy(update={"k_draws": k_draws or config.reward.k_draws})
    n = len(pairs.prompts)
    cond = bundle.prompt_encoder.encode(pairs.prompts)
    latents = torch.cat([pairs.winners, pairs.losers])
    # winner and loser of a pair share their draws: the comparison the paper's Eq. 9 makes
    estimate = implicit_rewards(denoisers, bundle, latents, cond, list(range(n)) * 2,
                                [("accuracy", i) for i in range(n)], reward)
    r = estimate.rewards
    return float((r[:n] > r[n:]).double().mean())


@dataclass(frozen=True)
class Agreement:
    k_draws: int
    common_random_numbers: bool
    agreement: float
    """Mean over repeats of the fraction of prompts where judge(best) > judge(worst) (ties count ½)."""
    spread: float
    """Standard deviation of that fraction over repeats (independent draws)."""


def selection_agreement(
    config: SailConfig, bundle: ModelBundle, run_dir: str, prompts: PromptsRecord, candidates: CandidatesRecord,
    policy: UnetCheckpoint, judge_reference: UnetCheckpoint, judge: JudgeFn,
    k_values: Sequence[int], repeats: int = 3,
) -> list[Agreement]:
    table = read_table(candidates.candidates.resolve(run_dir)).to_pydict()
    latents = ShardReader(run_dir, "latents").gather(table["latent_file"], table["latent_row"]).float()
    scores = judge(tensor_to_uint8(bundle.codec.decode(latents.to(bundle.device))), table["prompt"])
    prompt_ids = list(dict.fromkeys(table["prompt_id"]))
    group = {pid: g for g, pid in enumerate(prompt_ids)}
    groups = [group[pid] for pid in table["prompt_id"]]
    members = [[i for i, g in enumerate(groups) if g == j] for j in range(len(prompt_ids))]
    conds = Conditioning.from_tensors(read_tensors(prompts.conds.resolve(run_dir)))
    cond = conds.select([table["cond_row"][m[0]] for m in members])
    denoisers = load_for_inference(config.model, run_dir, policy, judge_reference, bundle.device)
    results = []
    for k in k_values:
        for crn in (True, False):
            fractions = []
            for repeat in range(repeats):
                reward = RewardConfig(**{**config.reward.model_dump(), "k_draws": k, "common_random_numbers": crn})
                r = implicit_rewards(denoisers, bundle, latents, cond, groups,
                                     [("agreement", repeat, pid) for pid in prompt_ids], reward).rewards.tolist()
                wins = []
                for rows in members:
                    pair = select_pair([r[i] for i in rows], "best_worst", "agreement")
                    if pair is None:
                        wins.append(0.5)
                        continue
                    gap = scores[rows[pair.winner]] - scores[rows[pair.loser]]
                    wins.append(0.5 if gap == 0 else float(gap > 0))
                fractions.append(float(np.mean(wins)))
            results.append(Agreement(k, crn, float(np.mean(fractions)), float(np.std(fractions))))
    return results
