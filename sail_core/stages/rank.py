"""Stage of a round: score every candidate with the implicit self-reward, pick one pair per prompt.

Work follows the generation shards (the same prompts), so ranking can be spread over the same
workers and an interrupted ranking resumes at the first unranked shard.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from sail_core.algorithm.reward import implicit_rewards
from sail_core.algorithm.selection import select_pair
from sail_core.data.pairs import SOURCE_SELF, pair_table, read_pairs
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import ShardReader, read_tensors
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import Denoisers, load_for_inference
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef
from sail_core.run.records import CandidatesRecord, PairsRecord, PromptsRecord
from sail_core.run.stage import ProgressCounter, Stage, StageContext, StageInputs, round_group
from sail_core.stages.generate import CANDIDATE_SCHEMA, shard_count


class RankInputs(StageInputs):
    prompts: PromptsRecord
    candidates: CandidatesRecord
    policy: ModelRef
    """ε_θ of Eq. 8: the model that generated the candidates."""
    judge: ModelRef
    """ε_ref of Eq. 8: the reference ``reward.reference`` names (``Lineage.judge``)."""


def _rewards_shard(out_dir: Path, shard: int) -> Path:
    return out_dir / f"rewards-{shard:05d}.parquet"


def _pairs_shard(out_dir: Path, shard: int) -> Path:
    return out_dir / f"pairs-{shard:05d}.parquet"


def rank_candidates(ctx: StageContext, inputs: RankInputs) -> PairsRecord | None:
    """Rank the missing shards (all, or only ``ctx.shards``: the generation shards' prompts); once every
    shard is ranked, write the round's rewards and pairs and return their record. A shard's pair
    table is written last, so a ranked shard is never ranked again."""
    config, layout, out_dir = ctx.config, ctx.layout, ctx.out_dir
    table = read_table(inputs.candidates.candidates.resolve(layout.root),
                       required=CANDIDATE_SCHEMA.names).to_pydict()
    members: dict[str, list[int]] = {}
    for i, pid in enumerate(table["prompt_id"]):
        members.setdefault(pid, []).append(i)
    prompt_ids = list(members)
    per_shard = config.generate.prompts_per_shard
    n_shards = shard_count(config, inputs.prompts)
    todo = [s for s in ctx.wanted_shards(n_shards) if not _pairs_shard(out_dir, s).exists()]
    if todo:
        conds = Conditioning.from_tensors(read_tensors(inputs.prompts.conds.resolve(layout.root)))
        denoisers = load_for_inference(config.model, layout.root, inputs.policy.checkpoint,
                                       inputs.judge.checkpoint, ctx.device)
        n_candidates = sum(len(members[pid]) for s in todo for pid in prompt_ids[s * per_shard : (s + 1) * per_shard])
        counter = ProgressCounter(n_candidates * config.reward.k_draws, ctx.progress)
        for shard in todo:
            _rank_shard(ctx, denoisers, table, members, conds, prompt_ids[shard * per_shard : (shard + 1) * per_shard],
                        inputs.prompts.round, shard, counter)
    if not all(_pairs_shard(out_dir, s).exists() for s in range(n_shards)):
        return None
    rewards_file, pairs_file = out_dir / "rewards.parquet", out_dir / "pairs.parquet"
    if not pairs_file.exists():
        write_table(rewards_file, pa.concat_tables([read_table(_rewards_shard(out_dir, s)) for s in range(n_shards)]),
                    overwrite=True)
        write_table(pairs_file, pa.concat_tables([read_pairs(_pairs_shard(out_dir, s)) for s in range(n_shards)]))
    pairs = read_pairs(pairs_file).column("p_win").to_pylist()
    return PairsRecord(
        round=inputs.prompts.round, rewards=Artifact.of(layout.root, rewards_file),
        pairs=Artifact.of(layout.root, pairs_file), n_pairs=len(pairs), mean_p_win=sum(pairs) / max(1, len(pairs)),
    )


def _rank_shard(ctx: StageContext, denoisers: Denoisers, table: dict[str, list], members: dict[str, list[int]],
                conds: Conditioning, chunk: list[str], round_index: int, shard: int, counter: ProgressCounter) -> None:
    config = ctx.config
    rows = [i for pid in chunk for i in members[pid]]
    latents = ShardReader(ctx.layout.root, "latents").gather([table["latent_file"][i] for i in rows],
                                                             [table["latent_row"][i] for i in rows]).float()
    position = {pid: g for g, pid in enumerate(chunk)}
    estimate = implicit_rewards(
        denoisers, ctx.bundle, latents, conds.select([table["cond_row"][members[pid][0]] for pid in chunk]),
        [position[table["prompt_id"][i]] for i in rows], [("judge", pid) for pid in chunk], config.reward,
        counter.advance,
    )
    reward = dict(zip(rows, estimate.rewards.tolist()))
    write_table(_rewards_shard(ctx.out_dir, shard), pa.table({
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
    write_table(_pairs_shard(ctx.out_dir, shard), pair_table(pairs))


RANK = Stage(
    name="rank", inputs=RankInputs, record=PairsRecord, run=rank_candidates,
    group=lambda inputs: round_group(inputs.prompts.round),
    settings=lambda config, inputs: {"model": model_settings(config), "reward": config.reward.model_dump(mode="json"),
                                     "prompts_per_shard": config.generate.prompts_per_shard},
    code=("sail_core.algorithm.reward", "sail_core.algorithm.selection", "sail_core.algorithm.noising"),
    shard_count=lambda config, inputs: shard_count(config, inputs.prompts),
    description="implicit self-reward of every candidate (Eq. 8-10); best vs worst per prompt",
)
