"""Stage: real images as preference anchors (RealAlign), encoded once; and their pairs.

A real image for a caption is the preferred sample. The rejected one is either a perturbed copy of
it (``real-perturbed`` pairs, made here once) or the current model's sample for the caption
(``real-generated`` pairs, made each round by :func:`real_generated_pairs` from what the existing
``generate_candidates`` produces for the captions, which this stage writes as a round's prompts).

Everything is encoded once: captions are text-encoded into one ``conds.safetensors`` (row i =
prompts row i, as ``generate_candidates`` expects), images and their perturbed copies are encoded
shard by shard (``real.images_per_shard``) into ``latents-*.safetensors``; a shard's table is written
last, so a shard whose table exists is finished and an interrupted stage resumes (as the seed stage).
Perturbations are applied to the image as the model sees it (after resizing), so a perturbed
latent differs from the real one by exactly the perturbation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from PIL import Image

from sail_core.config import RealAnchorConfig, SailConfig
from sail_core.data.pairs import SOURCE_REAL_GENERATED, SOURCE_REAL_PERTURBED, pair_table, read_pairs
from sail_core.data.perturb import apply_perturbation
from sail_core.data.real_images import (
    RealItem,
    expand_sources,
    list_real_items,
    read_image_bytes,
    select_items,
    source_files,
)
from sail_core.errors import InputError
from sail_core.images import decode_image, pil_to_tensor, resize_center_crop
from sail_core.io.tables import read_table, write_table
from sail_core.io.tensors import write_tensors
from sail_core.models.bundle import ModelBundle
from sail_core.models.conditioning import Conditioning
from sail_core.run.keys import file_fingerprint, model_settings
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.records import CandidatesRecord, RealRecord
from sail_core.run.stage import NoInputs, Stage, StageContext
from sail_core.seeding import derive_seed

# one row per encoded latent of a shard: the real image (role "real") or a perturbed copy
LATENT_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("prompt", pa.string()), ("role", pa.string()),
    ("perturbation", pa.int32()), ("kind", pa.string()), ("strength", pa.float64()), ("seed", pa.int64()),
    ("latent_file", pa.string()), ("latent_row", pa.int64()), ("cond_file", pa.string()), ("cond_row", pa.int64()),
    ("key", pa.string()), ("source_file", pa.string()), ("source_row", pa.int64()),
])
ANCHOR_COLUMNS = ("prompt_id", "prompt", "latent_file", "latent_row", "cond_file", "cond_row", "key",
                  "source_file", "source_row")
PERTURBATION_COLUMNS = ("pair_id", "prompt_id", "perturbation", "kind", "strength", "seed")
CAPTIONS_PER_CALL = 256  # bounds the text encoder's activations on large real sets


def real_files(config: SailConfig) -> list[str]:
    """Every file the real sources consist of: what keys the real stage."""
    return [str(f) for f in source_files(config.real.sources)]


def real_items(config: SailConfig) -> list[RealItem]:
    """The real images of a run: the sources' images, or a seeded subset of ``real.max_images``."""
    cfg = config.real
    items = list_real_items(cfg.sources, image_column=cfg.image_column, caption_column=cfg.caption_column)
    return select_items(items, cfg.max_images, cfg.seed)


def source_name(file: str, roots: Sequence[Path]) -> str:
    """Where an image came from, without an absolute path (a run directory holds none, so it can move):
    its path inside the source folder it was found in, or its source file's name."""
    path = Path(file)
    for root in roots:
        if root.is_dir() and path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return path.name


def real_prompt_id(index: int) -> str:
    return f"real-{index:06d}"


def fit_image(image: Image.Image, resolution: int, cfg: RealAnchorConfig, item: RealItem) -> Image.Image:
    """The real image as the model takes it (resolution × resolution), or an error naming the image."""
    width, height = image.size
    if cfg.resize == "error" and (width, height) != (resolution, resolution):
        raise InputError(f"image is {width}x{height} but the model takes {resolution}x{resolution}",
                         file=item.file, row=item.row, column=item.column, parameter="real.resize")
    if not cfg.allow_upscale and min(width, height) < resolution:
        raise InputError(f"image is {width}x{height}, smaller than the model's {resolution}x{resolution}",
                         file=item.file, row=item.row, column=item.column, parameter="real.allow_upscale")
    return resize_center_crop(image, resolution)


def chosen_perturbations(cfg: RealAnchorConfig, key: str) -> list[int]:
    """Indices into ``cfg.perturbations`` of an image's perturbed negatives: a seeded draw per image."""
    if "perturbed" not in cfg.negatives:
        return []
    rng = np.random.default_rng(derive_seed("real-perturbation-choice", cfg.seed, key))
    return [int(i) for i in rng.choice(len(cfg.perturbations), cfg.perturbed_per_image, replace=False)]


def perturbation_seed(cfg: RealAnchorConfig, key: str, perturbation: int) -> int:
    return derive_seed("real-perturb", cfg.seed, key, perturbation)


def _encode_shard(config: SailConfig, bundle: ModelBundle, layout: RunLayout, out_dir: Path, shard: int,
                  items: Sequence[RealItem], first_index: int, conds_file: Path) -> pa.Table:
    cfg = config.real
    roots = expand_sources(cfg.sources)
    latent_file = out_dir / f"latents-{shard:05d}.safetensors"
    latents: list[torch.Tensor] = []
    images: list[Image.Image] = []  # decoded but not yet encoded: at most one batch is held
    rows: list[dict] = []

    def add(image: Image.Image) -> None:  # latent row i is table row i
        images.append(image)
        if len(images) >= cfg.encode_batch_size:
            latents.append(bundle.codec.encode(pil_to_tensor(images, bundle.config.resolution)).cpu())
            images.clear()

    for offset, (item, data) in enumerate(read_image_bytes(items)):
        index = first_index + offset
        real = fit_image(decode_image(data, file=item.file, row=item.row, column=item.column),
                         bundle.config.resolution, cfg, item)
        common = {"prompt_id": real_prompt_id(index), "prompt": item.caption, "latent_file": layout.rel(latent_file),
                  "cond_file": layout.rel(conds_file), "cond_row": index, "key": item.key,
                  "source_file": source_name(item.file, roots), "source_row": item.row}
        rows.append({**common, "role": "real", "latent_row": len(rows)})
        add(real)
        for choice in chosen_perturbations(cfg, item.key):
            spec, seed = cfg.perturbations[choice], perturbation_seed(cfg, item.key, choice)
            rows.append({**common, "role": "perturbed", "perturbation": choice, "kind": spec.kind,
                         "strength": spec.strength, "seed": seed, "latent_row": len(rows)})
            add(apply_perturbation(real, spec, seed))
    if images:
        latents.append(bundle.codec.encode(pil_to_tensor(images, bundle.config.resolution)).cpu())
    # a half-written shard (tensors but no table) is recomputed, so its tensors may be replaced
    write_tensors(latent_file, {"latents": torch.cat(latents).half()}, overwrite=True)
    return pa.Table.from_pylist(rows, schema=LATENT_SCHEMA)


def _write_captions(bundle: ModelBundle, items: Sequence[RealItem], prompts_file: Path, conds_file: Path) -> None:
    """conds.safetensors, then prompts.parquet: prompts existing means both are complete."""
    captions = [item.caption for item in items]
    if not conds_file.exists():
        conds = Conditioning.cat([bundle.prompt_encoder.encode(captions[i : i + CAPTIONS_PER_CALL])
                                  for i in range(0, len(captions), CAPTIONS_PER_CALL)])
        write_tensors(conds_file, {k: v.half() for k, v in conds.tensors().items()})
    write_table(prompts_file, {"prompt_id": [real_prompt_id(i) for i in range(len(items))], "prompt": captions})


def _perturbed_pairs(latents: pa.Table) -> tuple[pa.Table, pa.Table]:
    """The real ≻ perturbed pair table and its perturbation table, from the shards' latent rows."""
    rows = latents.to_pylist()
    real = {r["prompt_id"]: r for r in rows if r["role"] == "real"}
    pairs, perturbations = [], []
    for r in rows:
        if r["role"] != "perturbed":
            continue
        winner = real[r["prompt_id"]]
        pair_id = f"real-perturbed-{r['prompt_id']}-p{r['perturbation']}"
        pairs.append({
            "pair_id": pair_id, "source": SOURCE_REAL_PERTURBED, "round": 0, "prompt": r["prompt"],
            "cond_file": r["cond_file"], "cond_row": r["cond_row"], "w_file": winner["latent_file"],
            "w_row": winner["latent_row"], "l_file": r["latent_file"], "l_row": r["latent_row"],
            "reward_w": None, "reward_l": None, "p_win": 1.0,
        })
        perturbations.append({"pair_id": pair_id, **{c: r[c] for c in PERTURBATION_COLUMNS[1:]}})
    table = pa.Table.from_pylist(perturbations, schema=pa.schema([
        ("pair_id", pa.string()), *(LATENT_SCHEMA.field(c) for c in PERTURBATION_COLUMNS[1:])]))
    return pair_table(pairs), table


def prepare_real(ctx: StageContext, inputs: NoInputs) -> RealRecord:
    """Encode the real images (and their perturbed copies) and captions once; write the real ≻ perturbed
    pairs, the captions as prompts and each caption's real latent."""
    config, bundle, layout, out_dir = ctx.config, ctx.bundle, ctx.layout, ctx.out_dir
    cfg = config.real
    items = real_items(config)
    prompts_file, conds_file = out_dir / "prompts.parquet", out_dir / "conds.safetensors"
    if not prompts_file.exists():
        _write_captions(bundle, items, prompts_file, conds_file)
    tables = []
    n_shards = -(-len(items) // cfg.images_per_shard)
    for shard in range(n_shards):
        start = shard * cfg.images_per_shard
        shard_table = out_dir / f"latents-{shard:05d}.parquet"
        if not shard_table.exists():
            write_table(shard_table, _encode_shard(config, bundle, layout, out_dir, shard,
                                                   items[start : start + cfg.images_per_shard], start, conds_file))
        tables.append(read_table(shard_table).cast(LATENT_SCHEMA))
        ctx.progress(shard + 1, n_shards)
    latents = pa.concat_tables(tables)
    files = {name: out_dir / f"{name}.parquet" for name in ("anchors", "pairs", "perturbations")}
    if not all(f.exists() for f in files.values()):
        pairs, perturbations = _perturbed_pairs(latents)
        real_rows = latents.filter(pc.equal(latents.column("role"), "real"))
        for name, table in (("anchors", real_rows.select(ANCHOR_COLUMNS)), ("pairs", pairs),
                            ("perturbations", perturbations)):
            write_table(files[name], table, overwrite=True)
    n_pairs = read_table(files["pairs"], columns=["pair_id"]).num_rows
    return RealRecord(
        prompts=Artifact.of(layout.root, prompts_file), conds=Artifact.of(layout.root, conds_file),
        anchors=Artifact.of(layout.root, files["anchors"]), perturbed_pairs=Artifact.of(layout.root, files["pairs"]),
        perturbations=Artifact.of(layout.root, files["perturbations"]), n_images=len(items),
        n_perturbed_pairs=n_pairs, generated_per_image=cfg.generated_per_image if "generated" in cfg.negatives else 0,
    )


def real_perturbed_pairs(layout: RunLayout, real: RealRecord) -> pa.Table:
    return read_pairs(real.perturbed_pairs.resolve(layout.root))


def real_generation_config(config: SailConfig, round_index: int) -> SailConfig:
    """The config to generate a round's negatives with: the round's sampler, ``generated_per_image``
    candidates per caption, and a seed of its own per round, so each round's policy is contrasted with
    fresh samples rather than the same noise again."""
    generate = config.generate.model_copy(update={
        "n_candidates": config.real.generated_per_image,
        "seed": derive_seed("real-negatives", config.generate.seed, round_index)})
    # a derived view, not a user config: alpha's n_candidates >= 2 rule is about the self candidates
    return config.model_copy(update={"generate": generate})


def real_generated_pairs(layout: RunLayout, real: RealRecord, candidates: CandidatesRecord) -> pa.Table:
    """Real ≻ generated pairs: each real image over the first ``generated_per_image`` candidates that
    ``generate_candidates`` made for its caption (candidates of ``real.prompts_record(round)``)."""
    k = real.generated_per_image
    if k == 0:
        raise InputError("the real set was prepared without generated negatives", parameter="real.negatives")
    anchors = {a["prompt_id"]: a for a in read_table(real.anchors.resolve(layout.root), required=ANCHOR_COLUMNS)
               .select(ANCHOR_COLUMNS).to_pylist()}
    candidates_file = candidates.candidates.resolve(layout.root)
    table = read_table(candidates_file, required=("prompt_id", "prompt", "candidate", "latent_file", "latent_row"))
    counts = dict.fromkeys(anchors, 0)
    rows = []
    for row, c in enumerate(table.select(["prompt_id", "prompt", "candidate", "latent_file", "latent_row"])
                            .to_pylist()):
        anchor = anchors.get(c["prompt_id"])
        if anchor is None or anchor["prompt"] != c["prompt"]:
            raise InputError("candidate is not for a caption of this real image set", file=candidates_file,
                             row=row, column="prompt_id")
        if c["candidate"] >= k:
            continue
        counts[c["prompt_id"]] += 1
        rows.append({
            "pair_id": f"real-generated-r{candidates.round:02d}-{c['prompt_id']}-c{c['candidate']}",
            "source": SOURCE_REAL_GENERATED, "round": candidates.round, "prompt": anchor["prompt"],
            "cond_file": anchor["cond_file"], "cond_row": anchor["cond_row"],
            "w_file": anchor["latent_file"], "w_row": anchor["latent_row"],
            "l_file": c["latent_file"], "l_row": c["latent_row"], "reward_w": None, "reward_l": None, "p_win": 1.0,
        })
    short = [p for p, n in counts.items() if n < k]
    if short:
        raise InputError(f"{len(short)} real captions (first: {short[0]}) have fewer than {k} candidates; "
                         "generate them with real_generation_config", file=candidates_file,
                         parameter="real.generated_per_image")
    return pair_table(rows)


REAL = Stage(
    name="real", inputs=NoInputs, record=RealRecord, run=prepare_real,
    group=lambda inputs: "real",
    settings=lambda config, inputs: {"model": model_settings(config), "real": config.real.model_dump(mode="json")},
    external=lambda config, inputs: [file_fingerprint(f) for f in real_files(config)],
    code=("sail_core.data.real_images", "sail_core.data.perturb"),
    description="RealAlign's real images and their perturbed copies, encoded once",
)
