"""Stage of a round: score every candidate with the implicit self-reward, pick one pair per prompt."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import torch

from sail_core.config import SailConfig
from sail_core.data.pairs import SOURCE_SELF, pair_table
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import ShardReader, read_tensors
from sail_core.models.bundle import ModelBundle
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import load_for_inference
from sail_core.models.lineage import UnetCheckpoint
from sail_core.reward import implicit_rewards
from sail_core.selection import select_pair
from sail_core.stages.generate import CANDIDATE_SCHEMA
from sail_core.stages.layout import Artifact, RunLayout
from sail_core.stages.records import CandidatesRecord, PairsRecord, PromptsRecord

Progress = Callable[[int, int], None]
PROMPTS_PER_CHUNK = 64
"""Prompts scored together: bounds the latents and draws held in memory (not the UNet batch size)."""


def rank_candidates(
    config: SailConfig,
    bundle: ModelBundle,
    layout: RunLayout,
    prompts: PromptsRecord,
    candidates: CandidatesRecord,
    policy: UnetCheckpoint,
    judge_reference: UnetCheckpoint,
    out_dir: Path,
    on_progress: Progress | None = None,
) -> PairsRecord:
    table = read_table(candidates.candidates.resolve(layout.root), required=CANDIDATE_SCHEMA.names).to_pydict()
    members: dict[str, list[int]] = {}
    for i, pid in enumerate(table["prompt_id"]):
        members.setdefault(pid, []).append(i)
    prompt_ids = list(members)
    conds = Conditioning.from_tensors(read_tensors(prompts.conds.resolve(layout.root)))
    latent_reader = ShardReader(layout.root, "latents")
    denoisers = load_for_inference(config.model, layout.root, policy, judge_reference, bundle.device)
    n = len(table["prompt_id"])
    rewards, policy_err, reference_err = (torch.empty(n, dtype=torch.float64) for _ in range(3))
    total, done = n * config.reward.k_draws, 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if on_progress is not None:
            on_progress(done, total)

    for start in range(0, len(prompt_ids), PROMPTS_PER_CHUNK):
        chunk = prompt_ids[start : start + PROMPTS_PER_CHUNK]
        rows = [i for pid in chunk for i in members[pid]]
        latents = latent_reader.gather([table["latent_file"][i] for i in rows],
                                       [table["latent_row"][i] for i in rows]).float()
        position = {pid: g for g, pid in enumerate(chunk)}
        estimate = implicit_rewards(
            denoisers, bundle, latents, conds.select([table["cond_row"][members[pid][0]] for pid in chunk]),
            [position[table["prompt_id"][i]] for i in rows], [("judge", pid) for pid in chunk],
            config.reward, advance,
        )
        rewards[rows] = estimate.rewards
        policy_err[rows] = estimate.policy_error.mean(dim=1).double()
        reference_err[rows] = estimate.reference_error.mean(dim=1).double()

    rewards_file, pairs_file = out_dir / "rewards.parquet", out_dir / "pairs.parquet"
    write_table(rewards_file, pa.table({
        "prompt_id": table["prompt_id"], "prompt": table["prompt"], "candidate": table["candidate"],
        "latent_file": table["latent_file"], "latent_row": table["latent_row"],
        "reward": rewards.numpy(), "policy_error": policy_err.numpy(), "reference_error": reference_err.numpy(),
    }), overwrite=True)
    pairs = []
    for pid in prompt_ids:
        rows = members[pid]
        chosen = select_pair([rewards[i].item() for i in rows], config.reward.selection, pid)
        if chosen is None:
            continue
        w, l = rows[chosen.winner], rows[chosen.loser]
        pairs.append({
            "pair_id": f"self-{pid}", "source": SOURCE_SELF, "round": prompts.round, "prompt": table["prompt"][w],
            "cond_file": table["cond_file"][w], "cond_row": table["cond_row"][w],
            "w_file": table["latent_file"][w], "w_row": table["latent_row"][w],
            "l_file": table["latent_file"][l], "l_row": table["latent_row"][l],
            "reward_w": rewards[w].item(), "reward_l": rewards[l].item(), "p_win": chosen.p_win,
        })
    write_table(pairs_file, pair_table(pairs), overwrite=True)
    return PairsRecord(
        round=prompts.round, rewards=Artifact.of(layout.root, rewards_file),
        pairs=Artifact.of(layout.root, pairs_file), n_pairs=len(pairs),
        mean_p_win=sum(p["p_win"] for p in pairs) / max(1, len(pairs)),
    )
