"""Stage of a round: score every candidate with the implicit self-reward, pick one pair per prompt.

Work follows the generation shards (the same prompts): ranking shard s reads generation shard s's
table and latents directly. Its inputs are therefore the *generation's* inputs (its key names the
generation stage it ranks), known before any candidate exists, so a shard run can generate and rank
its shards in one go without waiting for the other hosts; an interrupted ranking resumes at the
first unranked shard. How many (t, ε) draws each prompt gets is ``reward.estimator``'s choice
(``sail_core.algorithm.ranking``); every candidate's draws and its prompt's stopping reason are
recorded in ``rewards.parquet``, each pair's in ``pairs.parquet``, and the round's UNet passes in
the record. Progress counts UNet passes: its total starts at the cap (``k_max`` or K draws for every
candidate) and shrinks by the passes a prompt that stops early will not make, so it ends at the
passes made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from sail_core.algorithm.ranking import PASSES_PER_DRAW, planned_passes, rank_rewards
from sail_core.algorithm.selection import select_pair
from sail_core.config import SailConfig
from sail_core.data.pairs import SOURCE_SELF, pair_table, read_pairs
from sail_core.errors import InputError
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import ShardReader, read_tensors
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import Denoisers, load_for_inference
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef
from sail_core.run.records import PairsRecord, PromptsRecord
from sail_core.run.runner import prepare, stage_key
from sail_core.run.stage import ProgressCounter, Stage, StageContext, StageInputs, round_group
from sail_core.stages.generate import (
    CANDIDATE_SCHEMA,
    GENERATE,
    GenerateInputs,
    shard_count,
    shard_latents,
    shard_table,
)


class RankInputs(StageInputs):
    generation: GenerateInputs
    """The generation stage whose candidates are ranked: its prompts, and its policy (ε_θ of Eq. 8, the
    model that generated the candidates)."""
    judge: ModelRef
    """ε_ref of Eq. 8: the reference ``reward.reference`` names (``Lineage.judge``)."""

    @property
    def prompts(self) -> PromptsRecord:
        return self.generation.prompts

    @property
    def policy(self) -> ModelRef:
        return self.generation.policy


def generation_dir(ctx: StageContext, inputs: RankInputs) -> Path:
    return prepare(GENERATE, ctx.config, ctx.layout, inputs.generation).out_dir


def rank_settings(config: SailConfig, inputs: RankInputs) -> dict[str, Any]:
    """The candidates are named by the generation stage's key (its settings, inputs and code), which
    stands for their content: generation is deterministic given its key."""
    return {"model": model_settings(config), "reward": config.reward.model_dump(mode="json"),
            "prompts_per_shard": config.generate.prompts_per_shard,
            "generation": stage_key(GENERATE, config, inputs.generation).key}


def ranking_reads(ctx: StageContext, inputs: RankInputs) -> Iterator[list[Path]]:
    """A shard run: its own shards' pair tables (to skip what another host ranked), then the generation
    tables and latents of the shards it still has to rank."""
    if ctx.shards is None:  # a finishing call has its own directory; it only concatenates shard tables
        return
    yield [_pairs_shard(ctx.out_dir, s) for s in ctx.shards]
    source = generation_dir(ctx, inputs)
    yield [f for s in ctx.shards if not _pairs_shard(ctx.out_dir, s).exists()
           for f in (shard_table(source, s), shard_latents(source, s))]


def _rewards_shard(out_dir: Path, shard: int) -> Path:
    return out_dir / f"rewards-{shard:05d}.parquet"


def _pairs_shard(out_dir: Path, shard: int) -> Path:
    return out_dir / f"pairs-{shard:05d}.parquet"


def rank_candidates(ctx: StageContext, inputs: RankInputs) -> PairsRecord | None:
    """Rank the missing shards (all, or only ``ctx.shards``: the generation shards' prompts); once every
    shard is ranked, write the round's rewards and pairs and return their record. A shard's pair
    table is written last, so a ranked shard is never ranked again."""
    config, layout, out_dir = ctx.config, ctx.layout, ctx.out_dir
    n_shards = shard_count(config, inputs.prompts)
    todo = [s for s in ctx.wanted_shards(n_shards) if not _pairs_shard(out_dir, s).exists()]
    if todo:
        source = generation_dir(ctx, inputs)
        conds = Conditioning.from_tensors(read_tensors(inputs.prompts.conds.resolve(layout.root)))
        tables = {s: _candidates(source, s) for s in todo}
        denoisers = load_for_inference(config.model, layout.root, inputs.policy.checkpoint,
                                       inputs.judge.checkpoint, ctx.device, runtime=config.runtime)
        n_candidates = sum(len(t["prompt_id"]) for t in tables.values())
        counter = ProgressCounter(planned_passes(config.reward, n_candidates), ctx.progress)
        for shard in todo:
            _rank_shard(ctx, denoisers, tables[shard], conds, inputs.prompts.round, shard, counter)
    if not all(_pairs_shard(out_dir, s).exists() for s in range(n_shards)):
        return None
    rewards_file, pairs_file = out_dir / "rewards.parquet", out_dir / "pairs.parquet"
    if not pairs_file.exists():
        write_table(rewards_file, pa.concat_tables([read_table(_rewards_shard(out_dir, s)) for s in range(n_shards)]),
                    overwrite=True)
        write_table(pairs_file, pa.concat_tables([read_pairs(_pairs_shard(out_dir, s)) for s in range(n_shards)]))
    pairs = read_pairs(pairs_file).column("p_win").to_pylist()
    draws = read_table(rewards_file, required=["draws"]).column("draws").to_pylist()
    return PairsRecord(
        round=inputs.prompts.round, rewards=Artifact.of(layout.root, rewards_file),
        pairs=Artifact.of(layout.root, pairs_file), n_pairs=len(pairs), mean_p_win=sum(pairs) / max(1, len(pairs)),
        unet_passes=PASSES_PER_DRAW * sum(draws), mean_draws=sum(draws) / max(1, len(draws)),
    )


def _candidates(generation: Path, shard: int) -> dict[str, list]:
    table = shard_table(generation, shard)
    if not table.exists():
        raise InputError(f"generation shard {shard} is not finished; generate before ranking", file=table)
    return read_table(table, required=CANDIDATE_SCHEMA.names).to_pydict()


def _count_passes(counter: ProgressCounter):
    """The estimator's ``(done, dropped)`` on the stage's counter: dropped passes leave its total."""
    def on_passes(done: int, dropped: int) -> None:
        counter.total -= dropped
        counter.advance(done)
    return on_passes


def _rank_shard(ctx: StageContext, denoisers: Denoisers, table: dict[str, list], conds: Conditioning,
                round_index: int, shard: int, counter: ProgressCounter) -> None:
    config = ctx.config
    members: dict[str, list[int]] = {}
    for i, pid in enumerate(table["prompt_id"]):
        members.setdefault(pid, []).append(i)
    chunk = list(members)
    rows = [i for pid in chunk for i in members[pid]]
    latents = ShardReader(ctx.layout.root, "latents").gather([table["latent_file"][i] for i in rows],
                                                             [table["latent_row"][i] for i in rows]).float()
    position = {pid: g for g, pid in enumerate(chunk)}
    ranking = rank_rewards(
        denoisers, ctx.bundle, latents, conds.select([table["cond_row"][members[pid][0]] for pid in chunk]),
        [position[table["prompt_id"][i]] for i in rows], [("judge", pid) for pid in chunk], config.reward,
        _count_passes(counter),
    )
    reward = dict(zip(rows, ranking.rewards.tolist()))
    draws = dict(zip(rows, ranking.draws.tolist()))
    reason = dict(zip(chunk, ranking.stop_reasons))
    write_table(_rewards_shard(ctx.out_dir, shard), pa.table({
        "prompt_id": [table["prompt_id"][i] for i in rows], "prompt": [table["prompt"][i] for i in rows],
        "candidate": [table["candidate"][i] for i in rows], "latent_file": [table["latent_file"][i] for i in rows],
        "latent_row": [table["latent_row"][i] for i in rows], "reward": ranking.rewards.numpy(),
        "policy_error": ranking.policy_error.numpy(), "reference_error": ranking.reference_error.numpy(),
        "draws": pa.array(ranking.draws.numpy(), pa.int32()),
        "stop_reason": [reason[table["prompt_id"][i]] for i in rows],
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
            "draws": draws[w], "stop_reason": reason[pid],
        })
    write_table(_pairs_shard(ctx.out_dir, shard), pair_table(pairs))
    ctx.publish([_rewards_shard(ctx.out_dir, shard), _pairs_shard(ctx.out_dir, shard)])


RANK = Stage(
    name="rank", inputs=RankInputs, record=PairsRecord, run=rank_candidates,
    group=lambda inputs: round_group(inputs.prompts.round),
    settings=rank_settings,
    code=("sail_core.algorithm.ranking", "sail_core.algorithm.sequential", "sail_core.algorithm.draws",
          "sail_core.algorithm.reward", "sail_core.algorithm.selection", "sail_core.algorithm.noising"),
    shard_count=lambda config, inputs: shard_count(config, inputs.prompts),
    reads=ranking_reads,
    description="implicit self-reward of every candidate (Eq. 8-10); best vs worst per prompt",
)
