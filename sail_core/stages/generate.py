"""Stage of a round: N candidates per prompt from the current model, keeping the final latents.

Candidates are generated shard by shard (``generate.prompts_per_shard`` prompts); a shard is written
as tensors first and then its index table, so a shard whose table exists is finished and is never
regenerated. Shards are also the unit that shard workers split (``runtime.shard_workers``); each finished shard
is published at once (with a remote store), so a host that dies loses only the shard it was on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from sail_core.algorithm.sampler import sample_latents
from sail_core.config import SailConfig
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import read_tensors, write_tensors
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import Denoisers, load_policy
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef
from sail_core.run.records import CandidatesRecord, PromptsRecord
from sail_core.run.stage import ProgressCounter, Stage, StageContext, StageInputs, round_group, shards_of
from sail_core.seeding import derive_seed

CANDIDATE_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("prompt", pa.string()), ("candidate", pa.int32()), ("seed", pa.int64()),
    ("latent_file", pa.string()), ("latent_row", pa.int64()), ("cond_file", pa.string()), ("cond_row", pa.int64()),
])


class GenerateInputs(StageInputs):
    prompts: PromptsRecord
    policy: ModelRef


def shard_count(config: SailConfig, prompts: PromptsRecord) -> int:
    return shards_of(prompts.n_prompts, config.generate.prompts_per_shard)


def shard_rows(config: SailConfig, shard: int, n_prompts: int) -> range:
    per_shard = config.generate.prompts_per_shard
    return range(shard * per_shard, min((shard + 1) * per_shard, n_prompts))


def shard_table(out_dir: Path, shard: int) -> Path:
    """A generation shard's index (its presence marks the shard finished)."""
    return out_dir / f"shard-{shard:05d}.parquet"


def shard_latents(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:05d}.safetensors"


def generation_reads(ctx: StageContext, inputs: GenerateInputs) -> Iterator[list[Path]]:
    """A shard run needs only the index tables of its shards, to skip those another host finished (a
    finishing call already has its whole directory)."""
    if ctx.shards is not None:
        yield [shard_table(ctx.out_dir, s) for s in ctx.shards]


def generate_candidates(ctx: StageContext, inputs: GenerateInputs) -> CandidatesRecord | None:
    """Generate the missing candidate shards (all, or only ``ctx.shards`` on a shard worker); once every
    shard exists, write the round's candidate index and return its record."""
    config, layout, out_dir, prompts = ctx.config, ctx.layout, ctx.out_dir, inputs.prompts
    table = read_table(prompts.prompts.resolve(layout.root), required=("prompt_id", "prompt")).to_pydict()
    n_shards = shard_count(config, prompts)
    todo = [s for s in ctx.wanted_shards(n_shards) if not shard_table(out_dir, s).exists()]
    if todo:
        conds = Conditioning.from_tensors(read_tensors(prompts.conds.resolve(layout.root)))
        denoisers = load_policy(config.model, layout.root, inputs.policy.checkpoint, ctx.device, runtime=config.runtime)
        n_images = sum(len(shard_rows(config, s, prompts.n_prompts)) for s in todo) * config.generate.n_candidates
        counter = ProgressCounter(n_images, ctx.progress)
        for shard in todo:
            _generate_shard(ctx, denoisers, prompts, shard, table, conds, counter)
    if not all(shard_table(out_dir, s).exists() for s in range(n_shards)):
        return None
    index = out_dir / "candidates.parquet"
    if not index.exists():
        write_table(index, pa.concat_tables([read_table(shard_table(out_dir, s)) for s in range(n_shards)]))
    return CandidatesRecord(
        round=prompts.round, candidates=Artifact.of(layout.root, index), n_prompts=prompts.n_prompts,
        n_candidates=config.generate.n_candidates, shards_generated=len(todo), shards_reused=n_shards - len(todo),
    )


def _generate_shard(ctx: StageContext, denoisers: Denoisers, prompts: PromptsRecord, shard: int,
                    table: dict[str, list], conds: Conditioning, counter: ProgressCounter) -> None:
    config, bundle = ctx.config, ctx.bundle
    ids, texts = table["prompt_id"], table["prompt"]
    n = config.generate.n_candidates
    expanded = [r for r in shard_rows(config, shard, len(ids)) for _ in range(n)]
    seeds = [derive_seed("candidate", config.generate.seed, ids[r], i % n) for i, r in enumerate(expanded)]
    latents = sample_latents(denoisers.policy, bundle, conds.select(expanded), bundle.prompt_encoder.unconditional(),
                             seeds, config.generate.sampler, denoisers.dtype, on_batch=counter.advance)
    latent_file = shard_latents(ctx.out_dir, shard)
    # tensors of a shard without a table are an interrupted attempt: replace them
    write_tensors(latent_file, {"latents": latents.half()}, overwrite=True)
    write_table(shard_table(ctx.out_dir, shard), pa.Table.from_pylist([{
        "prompt_id": ids[r], "prompt": texts[r], "candidate": i % n, "seed": seeds[i],
        "latent_file": ctx.layout.rel(latent_file), "latent_row": i,
        "cond_file": prompts.conds.path, "cond_row": r,
    } for i, r in enumerate(expanded)], schema=CANDIDATE_SCHEMA))
    ctx.publish([latent_file, shard_table(ctx.out_dir, shard)])


GENERATE = Stage(
    name="generate", inputs=GenerateInputs, record=CandidatesRecord, run=generate_candidates,
    group=lambda inputs: round_group(inputs.prompts.round),
    settings=lambda config, inputs: {"model": model_settings(config),
                                     "generate": config.generate.model_dump(mode="json")},
    code=("sail_core.algorithm.sampler",),
    shard_count=lambda config, inputs: shard_count(config, inputs.prompts),
    reads=generation_reads,
    description="N candidates per prompt from the current model (latents kept)",
)
