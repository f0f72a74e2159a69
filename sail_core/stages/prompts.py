"""Stage of a round: its prompts, disjoint from the human seed set and every earlier round.

A round's prompt set is a slice of one seeded shuffle of the pool (the seed data's remaining
captions, or ``prompts.files`` minus the seed prompts), checked against the seed prompts and the
earlier rounds' prompt files. Prompts are text-encoded once, here; generation, ranking and training
read the cached conditioning.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from sail_core.config import SailConfig
from sail_core.data.prompts import check_disjoint, normalize_prompt, read_prompt_file, round_slices, unique_prompts
from sail_core.errors import InputError
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import write_tensors
from sail_core.run.keys import model_settings, path_fingerprint
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.records import PromptsRecord, SeedRecord
from sail_core.run.stage import Stage, StageContext, StageInputs, round_group
from sail_core.stages.seed import column


class PromptsInputs(StageInputs):
    round_index: int = Field(ge=1)
    seed: SeedRecord | None
    """None without human seed data (e.g. pure RealAlign with self pairs): the pool is ``prompts.files``."""
    earlier: tuple[PromptsRecord, ...] = ()
    """The prompts of rounds 1 .. round_index − 1."""


@dataclass(frozen=True)
class RoundPool:
    prompts: list[str]
    dropped_in_seed: int = 0
    dropped_duplicates: int = 0


def round_pool(config: SailConfig, layout: RunLayout, seed: SeedRecord | None) -> RoundPool:
    """The seed data's remaining captions (the paper's setting: the seed stage deduplicated them), or the
    user's prompt files minus repeats and the seed prompts."""
    if not config.prompts.files:
        if seed is None:
            raise InputError("rounds without human seed data need prompts.files", parameter="prompts.files")
        return RoundPool(column(layout, seed.pool, "prompt"))
    seed_prompts = {normalize_prompt(p) for p in column(layout, seed.pairs, "prompt")} if seed else set()
    every = [p for f in config.prompts.files for p in read_prompt_file(f)]
    distinct = unique_prompts(every)
    kept = [p for p in distinct if normalize_prompt(p) not in seed_prompts]
    return RoundPool(kept, dropped_in_seed=len(distinct) - len(kept), dropped_duplicates=len(every) - len(distinct))


def prepare_prompts(ctx: StageContext, inputs: PromptsInputs) -> PromptsRecord:
    """The round's prompts (written once) and their text conditioning."""
    config, layout, seed, round_index = ctx.config, ctx.layout, inputs.seed, inputs.round_index
    prompts_file, conds_file = ctx.out_dir / "prompts.parquet", ctx.out_dir / "conds.safetensors"
    pool = round_pool(config, layout, seed)
    if not prompts_file.exists():
        prompts = round_slices(pool.prompts, config.prompts.per_round[:round_index],
                               config.prompts.seed)[round_index - 1]
        used = {"the human seed set": column(layout, seed.pairs, "prompt")} if seed else {}
        used.update({f"round {r.round} ({r.prompts.path})": column(layout, r.prompts, "prompt")
                     for r in inputs.earlier})
        check_disjoint(prompts, used, prompts_file)
        if not conds_file.exists():
            conds = ctx.bundle.prompt_encoder.encode(prompts)
            write_tensors(conds_file, {k: v.half() for k, v in conds.tensors().items()})
        ids = [f"r{round_index:02d}-p{i:06d}" for i in range(len(prompts))]
        write_table(prompts_file, {"prompt_id": ids, "prompt": prompts})
    n = read_table(prompts_file, columns=["prompt"]).num_rows
    return PromptsRecord(round=round_index, prompts=Artifact.of(layout.root, prompts_file),
                         conds=Artifact.of(layout.root, conds_file), n_prompts=n, n_pool=len(pool.prompts),
                         n_dropped_in_seed=pool.dropped_in_seed, n_dropped_duplicates=pool.dropped_duplicates)


PROMPTS = Stage(
    name="prompts", inputs=PromptsInputs, record=PromptsRecord, run=prepare_prompts,
    group=lambda inputs: round_group(inputs.round_index),
    settings=lambda config, inputs: {"model": model_settings(config),
                                     "prompts": config.prompts.model_dump(mode="json")},
    external=lambda config, inputs: [path_fingerprint(f) for f in config.prompts.files],
    code=("sail_core.data.prompts",),
    description="the round's new prompts, text-encoded once",
)
