"""Stage of a round: score every candidate with the implicit self-reward, pick one pair per prompt.

Work follows the generation shards (the same prompts), so ranking can be spread over the same
workers and an interrupted ranking resumes at the first unranked shard.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from sail_core.config import SailConfig
from sail_core.data.pairs import SOURCE_SELF, pair_table, read_pairs
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


def rank_candidates(
    config: SailConfig,
    bundle: ModelBundle,
    layout: RunLayout,
    prompts: PromptsRecord,
    candidates: CandidatesRecord,
    policy: UnetCheckpoint,
    judge_reference: UnetCheckpoint,
    out_dir: Path,
    shards: Sequence[int] | None = None,
    on_progress: Progress | None = None,
) -> PairsRecord | None:
    """Rank the missing shards (all, or only ``shards``: the generation shards' prompts); once every
    shard is ranked, write the round's rewards and pairs and return their record. A shard's pair
    table is written last, so a ranked shard is never ranked again."""
    table = read_table(candidates.candidates.resolve(layout.root), required=CANDIDATE_SCHEMA.names).to_pydict()
    members: dict[str, list[int]] = {}
    for i, pid in enumerate(table["prompt_id"]):
        members.setdefault(pid, []).append(i)
    prompt_ids = list(members)
    per_shard = config.generate.prompts_per_shard
    n_shards = -(-len(prompt_ids) // per_shard)
    todo = [s for s in (range(n_shards) if shards is None else shards) if not _pairs_shard(out_dir, s).exists()]
    if todo:
        conds = Conditioning.from_tensors(read_tensors(prompts.conds.resolve(layout.root)))
        denoisers = load_for_inference(config.model, layout.root, policy, judge_reference, bundle.device)
        total = sum(len(members[pid]) for s in todo for pid in prompt_ids[s * per_shard : (s + 1) * per_shard])
        progress = _Counter(total * config.reward.k_draws, on_progress)
        for shard in todo:
            _rank_shard(config, bundle, layout, denoisers, table, members, conds,
                        prompt_ids[shard * per_shard : (shard + 1) * per_shard], prompts.round, out_dir, shard,
                        progress.advance)
    if not all(_pairs_shard(out_dir, s).exists() for s in range(n_shards)):
        return None
    rewards_file, pairs_file = out_dir / "rewards.parquet", out_dir / "pairs.parquet"
    if not pairs_file.exists():
        write_table(rewards_file, pa.concat_tables([read_table(_rewards_shard(out_dir, s)) for s in range(n_shards)]),
                    overwrite=True)
        write_table(pairs_file, pa.concat_tables([read_pairs(_pairs_shard(out_dir, s)) for s in range(n_shards)]))
    pairs = read_pairs(pairs_file).column("p_win").to_pylist()
    return PairsRecord(
        round=prompts.round, rewards=Artifact.of(layout.root, rewards_file),
        pairs=Artifact.of(layout.root, pairs_file), n_pairs=len(pairs), mean_p_win=sum(pairs) / max(1, len(pairs)),
    )


class _Counter:
    def __init__(self, total: int, on_progress: Progress | None) -> None:
        self.total, self.done, self.on_progress = total, 0, on_progress

    def advance(self, count: int) -> None:
        self.done += count
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)


def _rewards_shard(out_dir: Path, shard: int) -> Path:
    return out_dir / f"rewards-{shard:05d}.parquet"


def _pairs_shard(out_dir: Path, shard: int) -> Path:
    return out_dir / f"pairs-{shard:05d}.parquet"


def _rank_shard(config, bundle, layout, denoisers, table, members, conds, chunk, round_index, out_dir, shard,
                advance) -> None:
    rows = [i for pid in chunk for i in members[pid]]
    latents = ShardReader(layout.root, "latents").gather([table["latent_file"][i] for i in rows],
                                                         [table["latent_row"][i] for i in rows]).float()
    position = {pid: g for g, pid in enumerate(chunk)}
    estimate = implicit_rewards(
        denoisers, bundle, latents, conds.select([table["cond_row"][members[pid][0]] for pid in chunk]),
        [position[table["prompt_id"][i]] for i in rows], [("judge", pid) for pid in chunk], config.reward, advance,
    )
    reward = dict(zip(rows, estimate.rewards.tolist()))
    write_table(_rewards_shard(out_dir, shard), pa.table({
        "prompt_id": [table["prompt_id"][i] for i in rows], "prompt": [table["prompt"][i] for i in rows],
        "candidate": [table["candidate"][i] for i in rows], "latent_file": [table["latent_file"][i] for i in rows],
        "latent_row": [table["latent_row"][i] for i in rows], "reward": estimate.rewards.numpy(),
        "policy_error": estimate.policy_error.mean(dim=1).double().numpy(),
        "reference_error": estimate.reference_error.mean(dim=1).double().numpy(),
    }), overwrite=True)
    pairs = []
    for pid in chunk:
        mine = members[pid]
        chosen = select_pair([reward[i] for i in mine], config.reward.selection, pid)
        if chosen is None:
            continue
        w, lo = mine[chosen.winner], mine[chosen.loser]
        pairs.append({
            "pair_id": f"self-{pid}", "source": SOURCE_SELF, "round": round_index, "prompt": table["prompt"][w],
            "cond_file": table["cond_file"][w], "cond_row": table["cond_row"][w],
            "w_file": table["latent_file"][w], "w_row": table["latent_row"][w],
            "l_file": table["latent_file"][lo], "l_row": table["latent_row"][lo],
            "reward_w": reward[w], "reward_l": reward[lo], "p_win": chosen.p_win,
        })
    write_table(_pairs_shard(out_dir, shard), pair_table(pairs))
