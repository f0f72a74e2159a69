"""How many UNet passes does self-ranking need (issue 11)?

For ranking settings (``reward.*`` overrides: fixed K, sequential stopping at some confidence, with
or without stratified timesteps and antithetic noise), on one set of round-1 candidates of the
iteration-0 model: the UNet passes per candidate each setting spends, how often its chosen best has
a higher judge score (the embedded world's hidden utility) than its chosen worst, and the variance of
its reward differences. No training is needed beyond iteration 0: :func:`round_one_candidates` runs
the seed set, seed DPO, round 1's prompts and its generation through the stage runner, with the
same keys the SAIL flow gives them (a later arm of the same seed reuses them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from sail_core.algorithm.ranking import rank_rewards
from sail_core.algorithm.selection import select_pair
from sail_core.algorithm.sequential import STOP_CAP, STOP_SETTLED, STOP_TIED
from sail_core.config import RewardConfig, SailConfig
from sail_core.images import tensor_to_uint8
from sail_core.io.tables import read_table
from sail_core.io.tensors import ShardReader, read_tensors
from sail_core.models.bundle import ModelBundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import load_for_inference
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


def best_worst_agreement(rewards: Sequence[float], members: Sequence[Sequence[int]], scores: np.ndarray) -> float:
    """Fraction of prompts whose reward-best candidate has a higher judge score than the reward-worst;
    a prompt without a pair (tied rewards) or with tied scores counts ½."""
    wins = []
    for rows in members:
        pair = select_pair([rewards[i] for i in rows], "best_worst", "agreement")
        gap = 0.0 if pair is None else scores[rows[pair.winner]] - scores[rows[pair.loser]]
        wins.append(0.5 if gap == 0 else float(gap > 0))
    return float(np.mean(wins))


def ranking_agreement(config: SailConfig, bundle: ModelBundle, candidate_set: CandidateSet, judge: JudgeFn,
                      settings: Sequence[RankingSetting], repeats: int = 3) -> list[dict[str, Any]]:
    """One row per setting: means over ``repeats`` independent sets of draws of the passes per
    candidate, the agreement (:func:`best_worst_agreement`) and the fractions of prompts that stopped
    settled, tied or at the cap; ``agreement_spread`` is the agreement's sd over repeats, and
    ``diff_variance`` the variance over repeats of r_A − r_B for the disjoint candidate pairs (0, 1),
    (2, 3), ... of every prompt, averaged over them (a measure of the draws' noise that no judge
    enters)."""
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
    rows = []
    for setting in settings:
        reward = setting.config(config.reward)
        runs = []
        for repeat in range(repeats):
            ranking = rank_rewards(denoisers, bundle, latents, cond, groups,
                                   [("agreement", repeat, pid) for pid in prompt_ids], reward)
            r = ranking.rewards.tolist()
            reasons = ranking.stop_reasons
            runs.append({
                "passes_per_candidate": ranking.unet_passes / len(latents),
                "agreement": best_worst_agreement(r, members, scores),
                "settled": reasons.count(STOP_SETTLED) / len(reasons),
                "tied": reasons.count(STOP_TIED) / len(reasons),
                "cap": reasons.count(STOP_CAP) / len(reasons),
                "diffs": [r[a] - r[b] for a, b in couples],
            })
        diffs = torch.tensor([run.pop("diffs") for run in runs], dtype=torch.float64)
        row = {"setting": setting.name, **{k: float(np.mean([run[k] for run in runs])) for k in runs[0]}}
        row["agreement_spread"] = float(np.std([run["agreement"] for run in runs]))
        row["diff_variance"] = float(diffs.var(dim=0).mean()) if repeats > 1 else float("nan")
        row["repeats"] = repeats
        rows.append(row)
    return rows
