"""Stage: the human seed set, encoded once.

Reads Pick-a-Pic-format shards, draws the seed subset, and VAE-encodes every kept image and
text-encodes every caption exactly once; training then reads the cached latents and embeddings.
Work is sharded (``seed_data.pairs_per_shard``); a shard whose table exists is finished and is
never recomputed, so an interrupted encoding resumes.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import torch

from sail_core.config import SailConfig
from sail_core.data.pairs import SOURCE_HUMAN, pair_table, read_pairs
from sail_core.data.pickapic import LabelledPair, expand_files, read_pair_images, split_seed
from sail_core.data.prompts import unique_prompts
from sail_core.errors import InputError
from sail_core.images import decode_image, pil_to_tensor
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import write_tensors
from sail_core.models.bundle import ModelBundle
from sail_core.run.keys import file_fingerprint, model_settings
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.records import SeedRecord
from sail_core.run.stage import NoInputs, Stage, StageContext


def seed_files(config: SailConfig) -> list[Path]:
    if not config.seed_data.pairs:
        raise InputError("no seed preference files given", parameter="seed_data.pairs")
    return expand_files(config.seed_data.pairs)


def _encode_shard(bundle: ModelBundle, layout: RunLayout, out_dir: Path, shard: int, pairs: list[LabelledPair],
                  batch_size: int) -> pa.Table:
    resolution = bundle.config.resolution
    latents: list[torch.Tensor] = []
    images: list = []
    for pair, winner, loser in read_pair_images(pairs):
        columns = ("jpg_0", "jpg_1") if pair.winner == 0 else ("jpg_1", "jpg_0")
        images += [decode_image(winner, file=pair.file, row=pair.row, column=columns[0]),
                   decode_image(loser, file=pair.file, row=pair.row, column=columns[1])]
        if len(images) >= 2 * batch_size:
            latents.append(bundle.codec.encode(pil_to_tensor(images, resolution)).cpu())
            images = []
    if images:
        latents.append(bundle.codec.encode(pil_to_tensor(images, resolution)).cpu())
    captions = unique_prompts([p.caption for p in pairs])
    cond_row = {c: i for i, c in enumerate(captions)}
    latent_file = out_dir / f"latents-{shard:05d}.safetensors"
    cond_file = out_dir / f"conds-{shard:05d}.safetensors"
    # a half-written shard (tensors but no table) is recomputed, so its tensors may be replaced
    write_tensors(latent_file, {"latents": torch.cat(latents).half()}, overwrite=True)
    write_tensors(cond_file, {k: v.half() for k, v in bundle.prompt_encoder.encode(captions).tensors().items()},
                  overwrite=True)
    return pair_table([{
        "pair_id": f"human-{Path(p.file).stem}-{p.row}", "source": SOURCE_HUMAN, "round": 0, "prompt": p.caption,
        "cond_file": layout.rel(cond_file), "cond_row": cond_row[p.caption],
        "w_file": layout.rel(latent_file), "w_row": 2 * i, "l_file": layout.rel(latent_file), "l_row": 2 * i + 1,
        "reward_w": None, "reward_l": None, "p_win": 1.0,
    } for i, p in enumerate(pairs)])


def prepare_seed(ctx: StageContext, inputs: NoInputs) -> SeedRecord:
    config, bundle, layout, out_dir = ctx.config, ctx.bundle, ctx.layout, ctx.out_dir
    cfg = config.seed_data
    split = split_seed(seed_files(config), cfg.seed_size, cfg.seed)
    # shards follow file order, so each shard reads a contiguous run of row groups
    ordered = sorted(split.seed, key=lambda p: (p.file, p.row))
    shards = [ordered[i : i + cfg.pairs_per_shard] for i in range(0, len(ordered), cfg.pairs_per_shard)]
    tables = []
    for index, shard_pairs in enumerate(shards):
        shard_table = out_dir / f"pairs-{index:05d}.parquet"
        if not shard_table.exists():
            write_table(shard_table, _encode_shard(bundle, layout, out_dir, index, shard_pairs,
                                                   cfg.encode_batch_size))
        tables.append(read_pairs(shard_table))
        ctx.progress(index + 1, len(shards))
    pairs_file, pool_file = out_dir / "pairs.parquet", out_dir / "pool.parquet"
    if not pairs_file.exists():
        write_table(pairs_file, pa.concat_tables(tables))
    if not pool_file.exists():
        write_table(pool_file, {"prompt": split.pool})
    return SeedRecord(
        pairs=Artifact.of(layout.root, pairs_file), pool=Artifact.of(layout.root, pool_file),
        n_pairs=len(split.seed), n_rows=split.n_rows, n_ties=split.n_ties, n_unlabelled=split.n_unlabelled,
        n_pool=len(split.pool), n_pool_in_seed=split.n_pool_in_seed, n_pool_duplicates=split.n_pool_duplicates,
    )


def column(layout: RunLayout, artifact: Artifact, name: str) -> list:
    return read_table(artifact.resolve(layout.root), columns=[name], required=(name,)).column(name).to_pylist()


SEED = Stage(
    name="seed", inputs=NoInputs, record=SeedRecord, run=prepare_seed,
    group=lambda inputs: "seed",
    settings=lambda config, inputs: {"model": model_settings(config),
                                     "seed_data": config.seed_data.model_dump(mode="json")},
    external=lambda config, inputs: [file_fingerprint(f) for f in seed_files(config)],
    code=("sail_core.data.pickapic",),
    description="the human seed pairs, VAE- and text-encoded once",
)
