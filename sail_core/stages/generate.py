"""Stages of a round: its prompts, and N candidates per prompt from the current model.

A round's prompt set is a slice of the pool, disjoint from the seed prompts and from every earlier
round (checked against those rounds' prompt files). Prompts are text-encoded once. Candidates are
generated shard by shard; a shard is written as tensors first and then its index table, so a shard
whose table exists is finished and is never regenerated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow as pa

from sail_core.config import SailConfig
from sail_core.data.prompts import (
    check_disjoint,
    normalize_prompt,
    read_prompt_file,
    round_slices,
    unique_prompts,
)
from sail_core.diffusion.sampler import sample_latents
from sail_core.errors import InputError
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import read_tensors, write_tensors
from sail_core.models.bundle import ModelBundle
from sail_core.models.conditioning import Conditioning
from sail_core.models.denoisers import load_policy
from sail_core.models.lineage import UnetCheckpoint
from sail_core.seeding import derive_seed
from sail_core.stages.layout import Artifact, RunLayout
from sail_core.stages.records import CandidatesRecord, PromptsRecord, SeedRecord
from sail_core.stages.seed import column

Progress = Callable[[int, int], None]

CANDIDATE_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("prompt", pa.string()), ("candidate", pa.int32()), ("seed", pa.int64()),
    ("latent_file", pa.string()), ("latent_row", pa.int64()), ("cond_file", pa.string()), ("cond_row", pa.int64()),
])


def round_pool(config: SailConfig, layout: RunLayout, seed: SeedRecord | None) -> list[str]:
    """The seed data's remaining captions (the paper's setting), or the user's prompt files minus the
    seed prompts."""
    if not config.prompts.files:
        if seed is None:
            raise InputError("rounds without human seed data need prompts.files", parameter="prompts.files")
        return column(layout, seed.pool, "prompt")
    seed_prompts = {normalize_prompt(p) for p in column(layout, seed.pairs, "prompt")} if seed else set()
    prompts = unique_prompts([p for f in config.prompts.files for p in read_prompt_file(f)])
    return [p for p in prompts if normalize_prompt(p) not in seed_prompts]


def prepare_prompts(
    config: SailConfig,
    bundle: ModelBundle,
    layout: RunLayout,
    seed: SeedRecord | None,
    earlier: Sequence[PromptsRecord],
    round_index: int,
    out_dir: Path,
) -> PromptsRecord:
    """The round's prompts (written once) and their text conditioning."""
    prompts_file, conds_file = out_dir / "prompts.parquet", out_dir / "conds.safetensors"
    if not prompts_file.exists():
        prompts = round_slices(round_pool(config, layout, seed), config.prompts.per_round[:round_index],
                               config.prompts.seed)[round_index - 1]
        used = {"the human seed set": column(layout, seed.pairs, "prompt")} if seed else {}
        used.update({f"round {r.round} ({r.prompts.path})": column(layout, r.prompts, "prompt") for r in earlier})
        check_disjoint(prompts, used, prompts_file)
        if not conds_file.exists():
            write_tensors(conds_file, {k: v.half() for k, v in bundle.prompt_encoder.encode(prompts).tensors().items()})
        ids = [f"r{round_index:02d}-p{i:06d}" for i in range(len(prompts))]
        write_table(prompts_file, {"prompt_id": ids, "prompt": prompts})
    n = read_table(prompts_file, columns=["prompt"]).num_rows
    return PromptsRecord(round=round_index, prompts=Artifact.of(layout.root, prompts_file),
                         conds=Artifact.of(layout.root, conds_file), n_prompts=n)


def shard_count(config: SailConfig, prompts: PromptsRecord) -> int:
    return -(-prompts.n_prompts // config.generate.prompts_per_shard)


def _shard_table(out_dir: Path, shard: int) -> Path:
    return out_dir / f"shard-{shard:05d}.parquet"


def generate_candidates(
    config: SailConfig,
    bundle: ModelBundle,
    layout: RunLayout,
    prompts: PromptsRecord,
    policy: UnetCheckpoint,
    out_dir: Path,
    shards: Sequence[int] | None = None,
    on_progress: Progress | None = None,
) -> CandidatesRecord | None:
    """Generate the missing candidate shards (all, or only ``shards`` when generation is spread over
    workers); once every shard exists, write the round's candidate index and return its record."""
    table = read_table(prompts.prompts.resolve(layout.root), required=("prompt_id", "prompt")).to_pydict()
    ids, texts = table["prompt_id"], table["prompt"]
    n_shards = shard_count(config, prompts)
    wanted = range(n_shards) if shards is None else shards
    todo = [s for s in wanted if not _shard_table(out_dir, s).exists()]
    if todo:
        conds = Conditioning.from_tensors(read_tensors(prompts.conds.resolve(layout.root)))
        denoisers = load_policy(config.model, layout.root, policy, bundle.device)
        uncond = bundle.prompt_encoder.unconditional()
        per_shard = config.generate.prompts_per_shard
        total = sum(len(range(s * per_shard, min((s + 1) * per_shard, len(ids)))) for s in todo)
        total *= config.generate.n_candidates
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if on_progress is not None:
                on_progress(done, total)

        for shard in todo:
            rows = list(range(shard * per_shard, min((shard + 1) * per_shard, len(ids))))
            _generate_shard(config, bundle, layout, denoisers, prompts, out_dir, shard, rows, ids, texts, conds,
                            uncond, advance)
    if not all(_shard_table(out_dir, s).exists() for s in range(n_shards)):
        return None
    index = out_dir / "candidates.parquet"
    if not index.exists():
        write_table(index, pa.concat_tables([read_table(_shard_table(out_dir, s)) for s in range(n_shards)]))
    return CandidatesRecord(
        round=prompts.round, candidates=Artifact.of(layout.root, index), n_prompts=len(ids),
        n_candidates=config.generate.n_candidates, shards_generated=len(todo), shards_reused=n_shards - len(todo),
    )


def _generate_shard(config, bundle, layout, denoisers, prompts, out_dir, shard, rows, ids, texts, conds, uncond,
                    advance) -> None:
    n = config.generate.n_candidates
    expanded = [r for r in rows for _ in range(n)]
    seeds = [derive_seed("candidate", config.generate.seed, ids[r], c) for r in rows for c in range(n)]
    latents = sample_latents(denoisers.policy, bundle, conds.select(expanded), uncond, seeds,
                             config.generate.sampler, denoisers.dtype, on_batch=advance)
    latent_file = out_dir / f"shard-{shard:05d}.safetensors"
    # tensors of a shard without a table are an interrupted attempt: replace them
    write_tensors(latent_file, {"latents": latents.half()}, overwrite=True)
    write_table(_shard_table(out_dir, shard), pa.Table.from_pylist([{
        "prompt_id": ids[r], "prompt": texts[r], "candidate": i % n, "seed": seeds[i],
        "latent_file": layout.rel(latent_file), "latent_row": i,
        "cond_file": prompts.conds.path, "cond_row": r,
    } for i, r in enumerate(expanded)], schema=CANDIDATE_SCHEMA))
