"""``sail export`` / ``sail sample`` on tiny SD1.5- and SDXL-layout models: what plain diffusers loads from an
export draws the images sail's own sampler draws for that model (same seed, same scheduler), for the merged
LoRA, its Kohya copy, a fused pipeline and a fine-tuned pipeline; a reload that loaded nothing would draw
the base's images, which differ. The card parses and carries the report's metrics; bad input is one line.

The runs are built directly (adapters and a UNet with random non-zero weights, the report files the flow
writes): training is tested elsewhere, and a trained tiny adapter moves the images too little to tell a
reload that loaded nothing from one that worked.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
import yaml

from sail_cli.main import main
from sail_core.config import ExportConfig, LoraSettings
from sail_core.evaluation.run_report import write_models
from sail_core.export.exporter import export_model
from sail_core.export.lora_merge import merge_lineage
from sail_core.export.pipeline_folder import KOHYA_FILE, LORA_FILE
from sail_core.export.run_contents import open_run
from sail_core.export.sampling import sample_images
from sail_core.images import encode_png
from sail_core.io.atomic import sha256_tree, write_text
from sail_core.io.tables import write_table
from sail_core.models.adapters import add_adapter, save_adapter
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef
from sail_core.run.records import EvalRecord, ModelRecord
from tests.builders import tiny_config

PROMPTS = ["a red cube on a table", "two cats"]
SEEDS = [3, 11]
TOLERANCE = 1e-4
"""Float rounding between the stacked adapters and their merge (measured: about 1e-6 on these models)."""
SAMPLER = {"kind": "ddim", "steps": 3, "batch_size": 8, "guidance_scale": 3.0}
"""Random tiny UNets amplify float rounding: at guidance 7.5 with large adapters, the same weights summed in
another order drew images 3e-3 apart. These settings keep rounding at 1e-6 and adapters 5e-2 from the base."""

# the report's metrics: utility (the headline, listed first by the evaluations) prefers round-01, the
# alphabetically first metric prefers round-00, so ``best`` must follow the evaluations' order
METRICS = {
    "base": {"utility": 0.50, "utility_ci95": 0.02, "aesthetic": 0.40},
    "round-00": {"utility": 0.52, "utility_ci95": 0.02, "utility_win_rate": 0.55, "aesthetic": 0.90},
    "round-01": {"utility": 0.57, "utility_ci95": 0.03, "utility_win_rate": 0.61, "aesthetic": 0.30},
}


def _record_file(run: Path, group: str, name: str, settings: dict, record) -> None:
    entry = {"stage": name.split("-")[0], "group": group, "key": name.split("-")[1] * 2, "settings": settings,
             "inputs": [], "code": "", "record_type": type(record).__name__, "record": record.model_dump(mode="json")}
    write_text(run / group / f"{name}.json", json.dumps(entry), overwrite=True)


def _report(run: Path, config, models: list[tuple[str, ModelRef]]) -> None:
    report = run / "report"
    write_text(report / "config.json", json.dumps(config.model_dump(mode="json")))
    write_models(report, models)
    labels = [label for label, _ in models]
    keys = sorted({k for label in labels for k in METRICS[label]})
    write_table(report / "metrics.parquet", pa.table({"model": labels, **{k: [METRICS[label].get(k) for label in labels]
                                                                          for k in keys}}))
    write_text(report / "metrics.txt", "table\n")
    (report / "samples.png").write_bytes(encode_png(np.full((8, 8, 3), 128, np.uint8)))
    fake = Artifact(path="eval-base/evaluate-00000000/scores.parquet", sha256="0" * 64)
    base_eval = EvalRecord(label="base", scores=fake, summary=fake,
                           metrics={k: METRICS["base"][k] for k in ("utility", "utility_ci95", "aesthetic")})
    _record_file(run, "eval-base", "evaluate-00000000", {"model": model_settings(config),
                                                         "eval": config.eval.model_dump(mode="json")}, base_eval)


def _trained(run: Path, round_index: int, checkpoint: UnetCheckpoint, weights: Path) -> ModelRef:
    ref = ModelRef(checkpoint=checkpoint, identity=f"trained:{round_index}")
    artifact = Artifact.of(run, weights)
    record = ModelRecord(round=round_index, model=ref, weights=artifact, metrics=artifact, steps=1, resumed_from=0,
                         final_metrics={})
    _record_file(run, f"round-{round_index:02d}", f"train-{round_index:08d}", {}, record)
    return ref


def lora_run(run: Path, family: str, base: Path, config=None) -> Path:
    """Two LoRA rounds: rank 4 alpha 4, then rank 2 alpha 3 (scale 1.5, so a merge that forgot the scales fails)."""
    from diffusers import UNet2DConditionModel

    config = config or tiny_config(family, base, Path("pairs.parquet"), Path("pool.txt"), train_mode="lora",
                                   rounds=2, **{"eval.sampler": SAMPLER})
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=torch.float32)
    models, adapters = [("base", ModelRef(checkpoint=UnetCheckpoint(), identity="base"))], ()
    for round_index, settings in enumerate([LoraSettings(rank=4, alpha=4), LoraSettings(rank=2, alpha=3)]):
        name = f"round{round_index}"
        torch.manual_seed(round_index)
        add_adapter(unet, name, settings)
        with torch.no_grad():
            for param_name, param in unet.named_parameters():
                if f"lora_B.{name}." in param_name:
                    param.normal_(0.0, 0.05)
        path = run / f"round-{round_index:02d}" / f"train-{round_index:08d}" / "adapter.safetensors"
        save_adapter(unet, name, settings, path)
        adapters += (path.relative_to(run).as_posix(),)
        checkpoint = UnetCheckpoint(kind="lora", adapters=adapters, label=f"round-{round_index}")
        models.append((f"round-{round_index:02d}", _trained(run, round_index, checkpoint, path)))
    _report(run, config, models)
    return run


def full_run(run: Path, family: str, base: Path, config=None) -> Path:
    from diffusers import UNet2DConditionModel

    config = config or tiny_config(family, base, Path("pairs.parquet"), Path("pool.txt"), rounds=0,
                                   **{"eval.sampler": SAMPLER})
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=torch.float32)
    torch.manual_seed(5)
    with torch.no_grad():
        for param in unet.parameters():
            param.add_(0.01 * torch.randn_like(param))
    folder = run / "round-00" / "train-00000000" / "unet"
    unet.save_pretrained(folder, safe_serialization=True)
    checkpoint = UnetCheckpoint(kind="full", weights="round-00/train-00000000/unet", label="round-0")
    _report(run, config, [("base", ModelRef(checkpoint=UnetCheckpoint(), identity="base")),
                          ("round-00", _trained(run, 0, checkpoint, folder))])
    return run


def as_numpy(images: torch.Tensor) -> np.ndarray:
    """sail's images in [-1, 1] as diffusers' ``output_type="np"`` gives them."""
    return ((images + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def diffusers_images(pipe, config) -> np.ndarray:
    from diffusers import DDIMScheduler

    sampler = config.eval.sampler
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    side = config.model.resolution
    return pipe([p for p in PROMPTS for _ in SEEDS], num_inference_steps=sampler.steps,
                guidance_scale=sampler.guidance_scale, eta=sampler.eta, height=side, width=side, output_type="np",
                generator=[torch.Generator().manual_seed(s) for _ in PROMPTS for s in SEEDS]).images


def assert_same_and_not_base(loaded: np.ndarray, sail: np.ndarray, base: np.ndarray) -> None:
    assert np.abs(loaded - sail).max() < TOLERANCE
    assert np.abs(loaded - base).max() > 100 * TOLERANCE, "the reload draws the base's images: it loaded nothing"


def pipeline_class(family: str):
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline


@functools.cache
def _tokenizers(base: Path, family: str) -> dict:
    from transformers import CLIPTokenizer

    names = ("tokenizer", "tokenizer_2") if family == "sdxl" else ("tokenizer",)
    return {name: CLIPTokenizer.from_pretrained(base, subfolder=name) for name in names}


@functools.cache
def base_pipeline(base: Path, family: str):
    """The base as its family's pipeline, loaded once (a test that loads a LoRA into it unloads it after)."""
    return load_pipeline(base, base, family, pipeline_class(family))


@functools.cache
def base_images(base: Path, family: str) -> np.ndarray:
    """The base model's images for PROMPTS × SEEDS with SAMPLER (every tiny run here shares them)."""
    config = tiny_config(family, base, Path("pairs.parquet"), Path("pool.txt"), **{"eval.sampler": SAMPLER})
    return diffusers_images(base_pipeline(base, family), config)


def load_pipeline(folder: Path, base: Path, family: str, cls=None):
    """``cls.from_pretrained(folder)`` (default ``DiffusionPipeline``) with the tokenizers loaded once (reading
    CLIP's vocabulary is most of a tiny pipeline's loading time); the UNets, encoders and VAE come from ``folder``."""
    from diffusers import DiffusionPipeline

    return (cls or DiffusionPipeline).from_pretrained(folder, **_tokenizers(base, family))


def _lora_fixture(family: str, request, tmp_path_factory) -> tuple[str, Path, Path]:
    base = request.getfixturevalue(f"tiny_{family}")
    return family, base, lora_run(tmp_path_factory.mktemp(f"lora-{family}"), family, base)


@pytest.fixture(scope="module")
def lora_sd15(request, tmp_path_factory):
    return _lora_fixture("sd15", request, tmp_path_factory)


@pytest.fixture(scope="module")
def lora_sdxl(request, tmp_path_factory):
    return _lora_fixture("sdxl", request, tmp_path_factory)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_every_lora_export_draws_sail_s_images_in_plain_diffusers(family, request, tmp_path):
    """The merged LoRA (diffusers' file and the Kohya file) on the base pipeline, and the fused pipeline folder,
    all draw round-01's images as sail's sampler draws them; the base draws others."""
    _, base, run_dir = request.getfixturevalue(f"lora_{family}")
    before = sha256_tree(run_dir)
    run = open_run(str(run_dir))
    out, fused = tmp_path / "export", tmp_path / "fused"
    result = export_model(run, out, ExportConfig(model="round-01", format="kohya"))
    assert result.kind == "lora" and result.label == "round-01"
    fuse = family == "sd15"  # the fusing is diffusers' own and family-blind: once is enough (it costs seconds)
    if fuse:
        assert export_model(run, fused, ExportConfig(model="last", fuse=True)).kind == "fused"
        assert (fused / "model_index.json").is_file() and not (fused / LORA_FILE).exists()
    assert sha256_tree(run_dir) == before, "an export changed the run directory"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [LORA_FILE, KOHYA_FILE, "README.md", "samples.png", "sail_export.json"])
    merged = merge_lineage([run_dir / a for a in run.model("round-01").ref.checkpoint.adapters])
    assert merged.rank == 6 and merged.alpha == 6.0

    sail = as_numpy(sample_images(run, run.model("round-01"), PROMPTS, SEEDS))
    pipe, before = base_pipeline(base, family), base_images(base, family)
    for weight_name in (LORA_FILE, KOHYA_FILE):
        pipe.load_lora_weights(out, weight_name=weight_name)
        assert_same_and_not_base(diffusers_images(pipe, run.config), sail, before)
        pipe.unload_lora_weights()
    assert np.abs(diffusers_images(pipe, run.config) - before).max() == 0, "unloading left the shared base changed"
    if not fuse:
        return
    pipe = load_pipeline(fused, base, family)
    assert not any("lora" in name for name, _ in pipe.unet.named_parameters()), "the adapter was not unloaded"
    assert_same_and_not_base(diffusers_images(pipe, run.config), sail, base_images(base, family))


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_fine_tuning_exports_a_pipeline_diffusers_loads(family, request, tmp_path):
    from diffusers import DiffusionPipeline

    base = request.getfixturevalue(f"tiny_{family}")
    run = open_run(str(full_run(tmp_path / "run", family, base)))
    out = tmp_path / "export"
    export_model(run, out, ExportConfig())
    pipe = load_pipeline(out, base, family)
    assert type(pipe).__name__ == pipeline_class(family).__name__
    assert (out / "tokenizer" / "tokenizer_config.json").is_file()
    sail = as_numpy(sample_images(run, run.model("round-00"), PROMPTS, SEEDS))
    assert_same_and_not_base(diffusers_images(pipe, run.config), sail, base_images(base, family))

    if family == "sdxl":
        return
    half = tmp_path / "fp16"
    export_model(run, half, ExportConfig(dtype="fp16"))
    assert (half / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    pipe = DiffusionPipeline.from_pretrained(half, variant="fp16", torch_dtype=torch.float16)
    assert pipe.unet.dtype == torch.float16


def test_a_pixel_space_model_exports_as_a_pipeline_its_class_loads(tmp_path):
    """The embedded world's model has no VAE: its export is a PixelDiffusionPipeline folder."""
    from diffusers import DDIMScheduler

    from sail_core.config import load_config
    from sail_core.export.pixel_pipeline import PixelDiffusionPipeline
    from sail_core.io.paths import local_path

    config = load_config("world", {"rounds": 0, "eval.sampler.steps": 4})
    base = Path(local_path(config.model.source))
    run = open_run(str(full_run(tmp_path / "run", "sd15", base, config)))
    out = tmp_path / "export"
    result = export_model(run, out, ExportConfig())
    assert result.kind == "full" and "PixelDiffusionPipeline.from_pretrained" in result.snippet
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "PixelDiffusionPipeline"
    assert str(base) not in "".join(p.read_text() for p in out.rglob("*.json"))
    pipe = PixelDiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    prompts, seeds, sampler = ["a small yellow circle in the centre", "two large green circles"], [0, 7], \
        config.eval.sampler
    drawn = pipe([p for p in prompts for _ in seeds], num_inference_steps=sampler.steps,
                 guidance_scale=sampler.guidance_scale, output_type="np",
                 generator=[torch.Generator().manual_seed(s) for _ in prompts for s in seeds]).images
    sail = as_numpy(sample_images(run, run.model("round-00"), prompts, seeds))
    base_drawn = as_numpy(sample_images(run, run.model("base"), prompts, seeds))
    assert_same_and_not_base(drawn, sail, base_drawn)

    # a LoRA lineage of a pixel-space model: fused into the UNet (the pipeline has no LoRA loader)
    lora_config = load_config("world", {"rounds": 2, "model.train_mode": "lora", "eval.sampler.steps": 4})
    run = open_run(str(lora_run(tmp_path / "lora-run", "sd15", base, lora_config)))
    fused = tmp_path / "fused"
    assert export_model(run, fused, ExportConfig(model="round-01")).kind == "fused"
    pipe = PixelDiffusionPipeline.from_pretrained(fused)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    drawn = pipe(prompts[:1], num_inference_steps=sampler.steps, guidance_scale=sampler.guidance_scale,
                 output_type="np", generator=[torch.Generator().manual_seed(seeds[0])]).images
    sail = as_numpy(sample_images(run, run.model("round-01"), prompts[:1], seeds[:1]))
    assert_same_and_not_base(drawn, sail, base_drawn[:1])


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    return yaml.safe_load(front), body


def test_best_follows_the_headline_metric_and_the_card_holds_the_report(lora_sd15, tmp_path, monkeypatch):
    _, base, run_dir = lora_sd15
    run = open_run(str(run_dir))
    assert run.primary_metric == "utility"
    out = tmp_path / "best"
    result = export_model(run, out, ExportConfig())
    assert result.label == "round-01" and "utility" in result.chosen_by
    front, body = _card(out)
    assert front["library_name"] == "diffusers" and front["license"] == "other" and "base_model" not in front
    assert {"text-to-image", "diffusers", "lora", "diffusion-dpo", "sail"} <= set(front["tags"])
    # the metrics table: one row per model of the report, the values it holds
    table = {}
    for line in body.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0].strip("*") in METRICS:
            table[cells[0].strip("*")] = cells[1:]
    assert set(table) == set(METRICS)
    for label, values in METRICS.items():
        assert table[label][0] == f"{values['utility']:.4f} ± {values['utility_ci95']:.4f}"
        assert table[label][1] == f"{values['aesthetic']:.4f}"
    info = json.loads((out / "sail_export.json").read_text())
    assert info["metrics"] == METRICS and info["metric"] == "utility"
    # the snippet runs as written
    monkeypatch.chdir(tmp_path)
    exec(result.snippet, {})
    assert (tmp_path / "sample.png").is_file()


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"sail {argv[0]}: error: ")
    return lines[0]


def test_bad_input_is_one_line_naming_what_to_fix(lora_sd15, tmp_path, capsys):
    _, _, run_dir = lora_sd15
    out = tmp_path / "out"
    line = _error(["export", str(run_dir), "--out", str(out), "--model", "round-09"], capsys)
    assert "has no model round-09" in line and "round-00, round-01" in line
    out.mkdir()
    line = _error(["export", str(run_dir), "--out", str(out)], capsys)
    assert f"file {out}: already exists" in line and "--overwrite" in line
    line = _error(["export", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys)
    assert "run directory does not exist" in line
    (tmp_path / "empty").mkdir()
    line = _error(["export", str(tmp_path / "empty"), "--out", str(tmp_path / "o")], capsys)
    assert "no trained model" in line
    unfinished = tmp_path / "unfinished"
    for part in ("round-00", "round-01"):
        (unfinished / part).mkdir(parents=True)
        for file in (run_dir / part).glob("train-*.json"):
            (unfinished / part / file.name).write_bytes(file.read_bytes())
    line = _error(["export", str(unfinished), "--out", str(tmp_path / "o")], capsys)
    assert "unfinished" in line and "report" in line and "trained so far: round-00, round-01" in line
    line = _error(["export", str(run_dir), "--out", str(tmp_path / "o"), "--push-to-hub", "me/model"], capsys)
    assert "HF_HUB_OFFLINE" in line and (tmp_path / "o" / LORA_FILE).is_file()
    line = _error(["sample", str(run_dir), "--prompt", "x", "--seeds", "a-b", "--out", str(tmp_path / "g.png")],
                  capsys)
    assert "parameter '--seeds'" in line
    assert not (run_dir / "export").exists()


def test_changed_weights_are_named_not_exported(tmp_path, tiny_sd15, capsys):
    run_dir = lora_run(tmp_path / "run", "sd15", tiny_sd15)
    adapter = run_dir / "round-00" / "train-00000000" / "adapter.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:-8] + b"\0" * 8)
    line = _error(["export", str(run_dir), "--out", str(tmp_path / "o"), "--model", "last"], capsys)
    assert f"file {adapter}: the weights of round-01 changed since their training finished" in line
    assert not (tmp_path / "o").exists()


def test_sail_sample_writes_a_grid_of_prompts_by_seeds(lora_sd15, tmp_path, capsys):
    _, _, run_dir = lora_sd15
    out = tmp_path / "grid.png"
    assert main(["sample", str(run_dir), "--model", "round-00", "--prompt", PROMPTS[0], "--prompt", PROMPTS[1],
                 "--seeds", "0-2", "--out", str(out), "--device", "cpu"]) == 0
    from PIL import Image

    width, height = Image.open(out).size
    assert width > height  # 3 seeds across, 2 prompts down


def test_a_run_in_object_storage_exports_from_its_url(lora_sd15, tmp_path, monkeypatch):
    """``RUN_DIR`` may be the run's fsspec URL: the report, records and the model's adapters are pulled into a
    working copy of the export's own; the store is only read."""
    from sail_core.io.remote import RunStore

    _, _, run_dir = lora_sd15
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "cache"))
    location = "memory://export-tests/run"
    RunStore(location, local=run_dir).push([run_dir])
    held = set(RunStore(location, local=tmp_path / "peek").listing())
    out = tmp_path / "export"
    result = export_model(open_run(location), out, ExportConfig(model="best"))
    assert result.label == "round-01" and (out / LORA_FILE).is_file()
    local = tmp_path / "local-export"
    export_model(open_run(str(run_dir)), local, ExportConfig(model="best"))
    assert (out / LORA_FILE).read_bytes() == (local / LORA_FILE).read_bytes()
    assert set(RunStore(location, local=tmp_path / "peek").listing()) == held
