"""Analyses over a run's artifacts (no training): how good is the model as its own judge?

* :func:`self_reward_accuracy`: the implicit reward's agreement with held-out human labels (the
  paper's Fig. 5): for human pairs the seed set did not use, how often r(winner) > r(loser).
* :func:`selection_agreement`: for a round's candidates, how often the self-ranked best candidate
  has a higher judge score (the embedded world's hidden utility) than the self-ranked worst, for a
  given number of draws K with and without common random numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sail_core.algorithm.reward import implicit_rewards
from sail_core.config import SailConfig
from sail_core.data.pickapic import LabelledPair, read_pair_images, scan_labels, split_seed
from sail_core.experiments.ranking import CandidateSet, JudgeFn, RankingSetting, ranking_agreement
from sail_core.images import decode_image, pil_to_tensor
from sail_core.models.bundle import ModelBundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import load_for_inference
from sail_core.run.records import CandidatesRecord, PromptsRecord
from sail_core.stages.seed import seed_files


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
    """The fixed-K estimator at each K, with and without common random numbers
    (:func:`sail_core.experiments.ranking.ranking_agreement` for any ranking setting)."""
    settings = [RankingSetting(name=f"{k}-{crn}", reward={"estimator": "fixed", "k_draws": k,
                                                        "common_random_numbers": crn})
                for k in k_values for crn in (True, False)]
    rows = ranking_agreement(config, bundle, CandidateSet(run_dir, prompts, candidates, policy, judge_reference),
                             judge, settings, repeats)
    return [Agreement(s.reward["k_draws"], s.reward["common_random_numbers"], row["agreement"], row["agreement_spread"])
            for s, row in zip(settings, rows)]
