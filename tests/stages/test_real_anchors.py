"""RealAlign: real images as preference anchors (real ≻ perturbed, real ≻ generated) on the tiny SD1.5."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from sail_core.algorithm.mixup import mix_pairs, mixup_fractions, plan_mix
from sail_core.config import MixupConfig, PerturbationConfig
from sail_core.data.pairs import SOURCE_REAL_GENERATED, SOURCE_REAL_PERTURBED, pair_table
from sail_core.data.perturb import PERTURBATIONS, apply_perturbation
from sail_core.data.real_images import list_real_items, read_image_bytes, select_items
from sail_core.errors import InputError
from sail_core.images import pil_to_tensor, resize_center_crop
from sail_core.io.paths import local_path
from sail_core.io.tables import read_table
from sail_core.io.tensors import ShardReader
from sail_core.models.bundle import load_bundle
from sail_core.run.layout import RunLayout
from sail_core.run.lineage import base_model
from sail_core.run.runner import stage_key
from sail_core.run.stage import NoInputs
from sail_core.stages import MIX, GenerateInputs, MixInputs
from sail_core.stages.generate import generate_candidates
from sail_core.stages.mix import mix_round
from sail_core.stages.real import prepare_real, real_generated_pairs, real_generation_config, real_perturbed_pairs
from sail_core.training.pair_dataset import PairDataset
from tests.builders import stage_ctx, standard_pickapic, tiny_config

ALL_KINDS = [
    {"kind": "blur", "strength": 1.5}, {"kind": "noise", "strength": 0.2}, {"kind": "jpeg", "strength": 0.9},
    {"kind": "colour_shift", "strength": 0.3}, {"kind": "downscale", "strength": 4.0},
    {"kind": "contrast", "strength": 0.6},
]


def _picture(i: int, size: tuple[int, int]) -> Image.Image:
    """Textured pictures, so that every perturbation visibly changes them."""
    rng = np.random.default_rng(i)
    base = rng.integers(0, 256, (size[1] // 4 + 1, size[0] // 4 + 1, 3), dtype=np.uint8)
    return Image.fromarray(np.kron(base, np.ones((4, 4, 1), np.uint8))[: size[1], : size[0]])


def _png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _real_folder(folder: Path, n: int = 3, captions: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    captions = captions if captions is not None else [f"a real photo number {i}" for i in range(n)]
    lines = []
    for i, caption in enumerate(captions):
        name = f"img{i}.{'png' if i % 2 else 'jpg'}"
        _picture(i, (40 + 8 * i, 36)).save(folder / name)
        lines.append(json.dumps({"file_name": name, "caption": caption}))
    (folder / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _config(tmp_path: Path, folder: Path, sources: list[str] | None = None, **overrides):
    pool = tmp_path / "pool.txt"
    pool.write_text("\n".join(f"pool prompt {i}" for i in range(10)))
    settings = {"real.sources": sources or [str(folder)], "real.images_per_shard": 2, "real.encode_batch_size": 3}
    settings.update(overrides)
    return tiny_config("sd15", folder.parent / "tiny", standard_pickapic(tmp_path / "pap.parquet"), pool, **settings)


def _encode(bundle, images: list[Image.Image]) -> torch.Tensor:
    return bundle.codec.encode(pil_to_tensor(images, bundle.config.resolution)).half().float()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.float(), b.float(), atol=2e-3, rtol=0)


@pytest.fixture
def real_run(tiny_sd15, tmp_path):
    folder = _real_folder(tmp_path / "real")
    config = _config(tmp_path, folder, **{"model.source": str(tiny_sd15), "real.perturbations": ALL_KINDS,
                                          "real.perturbed_per_image": 2, "real.generated_per_image": 2,
                                          # one generation shard, two steps: the CPU is shared
                                          "generate.prompts_per_shard": 4, "generate.sampler.steps": 2})
    layout = RunLayout(tmp_path / "run")
    bundle = load_bundle(config.model)
    return config, layout, bundle, folder


def test_real_perturbed_pairs_anchor_the_real_image_and_the_chosen_perturbation(real_run):
    config, layout, bundle, folder = real_run
    real = prepare_real(stage_ctx(config, layout, "real"), NoInputs())
    assert (real.n_images, real.n_perturbed_pairs, real.generated_per_image) == (3, 6, 2)
    pairs = real_perturbed_pairs(layout, real).to_pylist()
    kinds = {r["pair_id"]: r for r in read_table(real.perturbations.resolve(layout.root)).to_pylist()}
    anchors = {a["prompt_id"]: a for a in read_table(real.anchors.resolve(layout.root)).to_pylist()}
    latents = ShardReader(layout.root, "latents")
    for pair in pairs:
        assert pair["source"] == SOURCE_REAL_PERTURBED and pair["p_win"] == 1.0
        chosen = kinds[pair["pair_id"]]
        anchor = anchors[chosen["prompt_id"]]
        assert (pair["w_file"], pair["w_row"]) == (anchor["latent_file"], anchor["latent_row"])
        spec = PerturbationConfig(kind=chosen["kind"], strength=chosen["strength"])
        assert spec == config.real.perturbations[chosen["perturbation"]]
        image = resize_center_crop(Image.open(folder / anchor["source_file"]).convert("RGB"), 32)
        # the real image, then each perturbation of it applied directly (the chosen one first)
        others = [p for p in config.real.perturbations if p != spec]
        expected = _encode(bundle, [image] + [apply_perturbation(image, p, chosen["seed"]) for p in [spec, *others]])
        winner = latents.gather([pair["w_file"]], [pair["w_row"]])
        loser = latents.gather([pair["l_file"]], [pair["l_row"]])
        assert _close(winner, expected[:1])  # the winner is the real image
        # the loser is exactly the recorded perturbation of the real image, and no other one
        assert _close(loser, expected[1:2])
        assert not any(_close(loser, e[None]) for e in [expected[0], *expected[2:]])
    # captions were text-encoded once, as the training pairs' conditioning
    dataset = PairDataset(real_perturbed_pairs(layout, real), layout.root)
    _, _, cond = dataset.batch([0])
    expected = bundle.prompt_encoder.encode([pairs[0]["prompt"]]).prompt_embeds.half().float()
    assert torch.equal(cond.prompt_embeds, expected)
    # resumable: shards with tables are reused, an interrupted stage resumes to the same record
    out = layout.root / "real"
    assert prepare_real(stage_ctx(config, layout, "real"), NoInputs()) == real
    finished = (out / "latents-00000.safetensors").stat().st_mtime_ns
    for name in ("latents-00001.parquet", "anchors.parquet", "pairs.parquet", "perturbations.parquet"):
        (out / name).unlink()
    assert prepare_real(stage_ctx(config, layout, "real"), NoInputs()) == real
    assert (out / "latents-00000.safetensors").stat().st_mtime_ns == finished


def test_real_generated_pairs_and_exact_source_fractions(real_run):
    config, layout, bundle, _ = real_run
    real = prepare_real(stage_ctx(config, layout, "real"), NoInputs())
    gen_config = real_generation_config(config, 1)
    assert gen_config.generate.sampler == config.generate.sampler and gen_config.generate.n_candidates == 2
    candidates = generate_candidates(stage_ctx(gen_config, layout, "r1", "real-gen"),
                                     GenerateInputs(prompts=real.prompts_record(1), policy=base_model(config)))
    generated = real_generated_pairs(layout, real, candidates)
    anchors = {a["prompt_id"]: a for a in read_table(real.anchors.resolve(layout.root)).to_pylist()}
    by_prompt = {}
    for c in read_table(candidates.candidates.resolve(layout.root)).to_pylist():
        by_prompt.setdefault(c["prompt"], []).append(c)
    assert generated.num_rows == 3 * 2
    for pair in generated.to_pylist():
        assert pair["source"] == SOURCE_REAL_GENERATED and pair["round"] == 1
        anchor = next(a for a in anchors.values() if a["prompt"] == pair["prompt"])
        assert (pair["w_file"], pair["w_row"]) == (anchor["latent_file"], anchor["latent_row"])
        assert (pair["cond_file"], pair["cond_row"]) == (anchor["cond_file"], anchor["cond_row"])
        mine = {(c["latent_file"], c["latent_row"]) for c in by_prompt[pair["prompt"]]}
        assert (pair["l_file"], pair["l_row"]) in mine
    # the loser latents are the generated samples themselves
    latents = ShardReader(layout.root, "latents")
    first = generated.to_pylist()[0]
    candidate = next(c for c in by_prompt[first["prompt"]] if c["latent_row"] == first["l_row"])
    assert torch.equal(latents.gather([first["l_file"]], [first["l_row"]]),
                       latents.gather([candidate["latent_file"]], [candidate["latent_row"]]))

    # pure RealAlign (no self, no human pairs): exact proportions, every real pair kept
    pure = config.model_copy(update={"mixup": MixupConfig(alpha=0, real_generated=0.5, real_perturbed=0.5,
                                                          size="real_all")})
    mix_inputs = MixInputs(round_index=1, real=real, real_candidates=candidates)
    mixed = mix_round(stage_ctx(pure, layout, "r1", "mix"), mix_inputs)
    assert mixed.counts == {SOURCE_REAL_GENERATED: 6, SOURCE_REAL_PERTURBED: 6}
    rows = read_table(mixed.mixed.resolve(layout.root)).to_pylist()
    assert len({r["pair_id"] for r in rows}) == 12
    key = stage_key(MIX, pure, mix_inputs)
    assert key.group == "round-01" and key.settings["real"]["generated_per_image"] == 2


def test_source_fractions_give_exact_proportions():
    def table(source: str, n: int) -> pa.Table:
        return pair_table([{"pair_id": f"{source}-{i}", "source": source, "round": 1, "prompt": "p",
                            "cond_file": "c", "cond_row": 0, "w_file": "w", "w_row": i, "l_file": "l", "l_row": i,
                            "reward_w": None, "reward_l": None, "p_win": 1.0} for i in range(n)])

    config = MixupConfig(alpha=0.25, real_generated=0.25, real_perturbed=0.125, size=80)
    fractions = mixup_fractions(config)
    assert fractions == {"self": 0.25, "human": 0.375, SOURCE_REAL_GENERATED: 0.25, SOURCE_REAL_PERTURBED: 0.125}
    tables = {s: table(s, 50) for s in fractions}
    mixed = mix_pairs(tables, fractions, config.size, "round", 1).column("source").to_pylist()
    assert {s: mixed.count(s) for s in fractions} == {"self": 20, "human": 30, SOURCE_REAL_GENERATED: 20,
                                                       SOURCE_REAL_PERTURBED: 10}
    # self_all keeps all self pairs; real_all keeps the real source that needs the largest set whole
    available = {"self": 10, "human": 500, SOURCE_REAL_GENERATED: 30, SOURCE_REAL_PERTURBED: 12}
    assert plan_mix(available, fractions, "self_all") == {"self": 10, "human": 15, SOURCE_REAL_GENERATED: 10,
                                                          SOURCE_REAL_PERTURBED: 5}
    assert plan_mix(available, fractions, "real_all") == {SOURCE_REAL_GENERATED: 30, "self": 30, "human": 45,
                                                          SOURCE_REAL_PERTURBED: 15}
    # defaults leave SAIL as it was: self and human only, and the same mix key
    assert {s: f for s, f in mixup_fractions(MixupConfig()).items() if f} == {"self": 0.25, "human": 0.75}
    # float round-off must not ask for human pairs that pure RealAlign does not have
    assert mixup_fractions(MixupConfig(alpha=0.25, real_generated=0.25, real_perturbed=0.5))["human"] == 0.0


def test_fractions_over_one_and_missing_sources_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"mixup.alpha .* \+ mixup.real_generated .* \+ mixup.real_perturbed"):
        MixupConfig(alpha=0.5, real_generated=0.4, real_perturbed=0.2)
    folder = tmp_path / "nothing"
    folder.mkdir()
    with pytest.raises(ValueError, match="real.sources"):
        _config(tmp_path, folder, sources=[], **{"mixup.real_perturbed": 0.5, "real.sources": []})
    with pytest.raises(ValueError, match=r"real.negatives does not include 'generated'"):
        _config(tmp_path, folder, **{"mixup.real_generated": 0.5, "real.negatives": ["perturbed"]})


def test_presets_take_real_overrides():
    from sail_core.config import load_config

    world_real = "pkg:sail_core.world/data/real.parquet"
    config = load_config("world", [f"real.sources=[{world_real}]", "mixup.alpha=0", "mixup.real_generated=0.5",
                                   "mixup.real_perturbed=0.5", "mixup.size=real_all"])
    assert config.real.sources == (world_real,) and mixup_fractions(config.mixup)["human"] == 0.0
    with pytest.raises(InputError, match="mixup.real_generated"):
        load_config("world", ["mixup.real_generated=0.9"])
    with pytest.raises(InputError, match="no such config section"):
        load_config("world", ["rael.sources=[world]"])


def test_sail_mix_key_is_unchanged_by_the_real_fields(tmp_path):
    from sail_core.run.layout import Artifact
    from sail_core.run.records import PairsRecord, SeedRecord

    folder = _real_folder(tmp_path / "real")
    config = _config(tmp_path, folder)
    art = Artifact(path="x", sha256="a" * 64)
    seed = SeedRecord(pairs=art, pool=art, n_pairs=1, n_rows=1, n_ties=0, n_unlabelled=0, n_pool=0)
    pairs = PairsRecord(round=1, rewards=art, pairs=Artifact(path="y", sha256="b" * 64), n_pairs=1, mean_p_win=1.0)
    key = stage_key(MIX, config, MixInputs(round_index=1, seed=seed, pairs=pairs))
    assert key.settings == {"mixup": {"alpha": 0.25, "size": "self_all"}}


def test_unreadable_image_names_its_file_and_row(tiny_sd15, tmp_path):
    folder = _real_folder(tmp_path / "real")
    (folder / "img1.png").write_bytes(b"this is not a picture")
    config = _config(tmp_path, folder, **{"model.source": str(tiny_sd15)})
    layout = RunLayout(tmp_path / "run")
    with pytest.raises(InputError) as caught:
        prepare_real(stage_ctx(config, layout, "real"), NoInputs())
    assert caught.value.file == str(folder / "img1.png") and caught.value.row == 1
    assert "does not decode" in str(caught.value)


def test_missing_caption_names_its_row(tmp_path):
    folder = _real_folder(tmp_path / "real", captions=["fine", "", "also fine"])
    with pytest.raises(InputError) as caught:
        list_real_items([str(folder)])
    assert (caught.value.file, caught.value.row, caught.value.column) == (str(folder / "captions.jsonl"), 1, "caption")
    # sidecar captions: a missing .txt names the image
    bare = tmp_path / "bare"
    bare.mkdir()
    _picture(0, (32, 32)).save(bare / "a.png")
    with pytest.raises(InputError, match="a.txt"):
        list_real_items([str(bare)])
    (bare / "a.txt").write_text("a caption beside its image\n")
    assert [i.caption for i in list_real_items([str(bare)])] == ["a caption beside its image"]


def test_parquet_table_form(tiny_sd15, tmp_path):
    pictures = [_picture(i, (32, 48)) for i in range(5)]
    file = tmp_path / "real.parquet"
    pq.write_table(pa.table({
        "image": [{"bytes": _png(p), "path": None} for p in pictures],  # the Hugging Face Image struct
        "text": [f"parquet caption {i}" for i in range(5)],
    }), file, row_group_size=2)
    folder = tmp_path / "unused"
    folder.mkdir()
    config = _config(tmp_path, folder, sources=[str(file)], **{"model.source": str(tiny_sd15), "real.max_images": 3,
                                                               "real.negatives": ["perturbed"]})
    layout = RunLayout(tmp_path / "run")
    bundle = load_bundle(config.model)
    real = prepare_real(stage_ctx(config, layout, "real"), NoInputs())
    anchors = read_table(real.anchors.resolve(layout.root)).to_pylist()
    rows = [a["source_row"] for a in anchors]
    assert len(rows) == 3 and rows == sorted(rows)  # a seeded subset, in table order
    assert rows == [i.row for i in select_items(list_real_items([str(file)]), 3, config.real.seed)]
    latents = ShardReader(layout.root, "latents")
    for anchor in anchors:
        assert anchor["prompt"] == f"parquet caption {anchor['source_row']}"
        expected = _encode(bundle, [resize_center_crop(pictures[anchor["source_row"]], 32)])
        assert _close(latents.gather([anchor["latent_file"]], [anchor["latent_row"]]), expected)
    assert real.generated_per_image == 0 and real.n_perturbed_pairs == 3
    # a missing image column is named
    pq.write_table(pa.table({"caption": ["x"]}), tmp_path / "bad.parquet")
    with pytest.raises(InputError) as caught:
        list_real_items([str(tmp_path / "bad.parquet")])
    assert caught.value.column == "image"


def test_webdataset_tar_form(tmp_path):
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(3):
            members = {f"{i:04d}.jpg": _png(_picture(i, (32, 32)), "JPEG")}
            members[f"{i:04d}.txt" if i != 1 else f"{i:04d}.json"] = (
                f"tar caption {i}".encode() if i != 1 else json.dumps({"caption": "tar caption 1"}).encode())
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    items = list_real_items([str(shard)])
    assert [i.caption for i in items] == ["tar caption 0", "tar caption 1", "tar caption 2"]
    assert [Image.open(io.BytesIO(b)).size for _, b in read_image_bytes(items)] == [(32, 32)] * 3


def test_resolution_policy_errors_name_the_image(tiny_sd15, tmp_path):
    folder = _real_folder(tmp_path / "real", n=1)
    config = _config(tmp_path, folder, **{"model.source": str(tiny_sd15), "real.resize": "error"})
    layout = RunLayout(tmp_path / "run")
    with pytest.raises(InputError) as caught:
        prepare_real(stage_ctx(config, layout, "real"), NoInputs())
    assert caught.value.parameter == "real.resize" and caught.value.file == str(folder / "img0.jpg")


def test_perturbations_are_pure_and_seeded():
    image = _picture(3, (32, 32))
    before = np.asarray(image).copy()
    for kind, strength in [(k["kind"], k["strength"]) for k in ALL_KINDS]:
        spec = PerturbationConfig(kind=kind, strength=strength)
        a, b = apply_perturbation(image, spec, 7), apply_perturbation(image, spec, 7)
        assert np.array_equal(np.asarray(a), np.asarray(b)) and a.size == image.size
        assert not np.array_equal(np.asarray(a), before)
    assert np.array_equal(np.asarray(image), before)  # the input is never modified
    noise = PerturbationConfig(kind="noise", strength=0.1)
    assert not np.array_equal(np.asarray(apply_perturbation(image, noise, 1)),
                              np.asarray(apply_perturbation(image, noise, 2)))
    assert set(PERTURBATIONS) == {"blur", "noise", "jpeg", "colour_shift", "downscale", "contrast"}
    with pytest.raises(ValueError, match="downscale"):
        PerturbationConfig(kind="downscale", strength=1.0)


def test_world_real_images_are_deterministic_labelled_renders(tmp_path):
    from sail_core.world.assets import REAL_IMAGES_FILE
    from sail_core.world.real import RealImagesConfig, build_real_images, real_images_table

    config = RealImagesConfig()
    table = real_images_table(config)
    split = config.split.split()
    labelled = list(split.labelled)
    assert table.column("caption").to_pylist() == labelled  # every labelled prompt once, no held-out one
    assert not (set(split.test) | set(split.tune)) & set(labelled)
    path = build_real_images(tmp_path / "real.parquet", config)
    assert pq.read_table(path).equals(table)  # deterministic: a second render gives the same bytes
    assert local_path("pkg:sail_core.world/data/real.parquet") == str(REAL_IMAGES_FILE)
    items = list_real_items([str(path)])
    assert len(items) == len(labelled) and items[0].column == "image"
