"""The GPU check's CPU dry run (same code path as on a GPU, tiny shapes) and its package planning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.version import Version

from bench import gpu_env
from bench.gpu_check import STATED_FWD_GFLOP, peak_for, published_architecture, summary_table

REPO = Path(__file__).resolve().parents[2]

COMMON = {"family", "op", "impl", "variant", "op_status", "warmup_s", "peak_gib", "fwd_gflop", "flops_formula",
          "tflops", "peak_tflops", "mfu"}
FIELDS = {
    "sample": COMMON | {"images", "steps", "sampler", "guidance_scale", "unet_batch", "seconds", "repeats",
                        "images_per_s", "ms_per_step"},
    "rank": COMMON | {"candidates", "k_draws", "batch", "forwards", "seconds", "repeats", "candidates_per_s"},
    "dpo": COMMON | {"optimizer", "mixed_precision", "gradient_checkpointing", "micro_batch_pairs", "accumulation",
                     "pairs_per_step", "seconds_per_step", "steps", "pairs_per_s", "hw_tflops", "reference_dtype"},
}
THROUGHPUT = {"sample": "images_per_s", "rank": "candidates_per_s", "dpo": "pairs_per_s"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(PYTHON=sys.executable, RESULTS_DIR=str(out), WHEELHOUSE=str(out / "no-wheelhouse"),
               GPU_CHECK_LIMIT_S="600", OMP_NUM_THREADS=env.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run([str(REPO / "bench" / "gpu_check.sh"), "--dry-run"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (jsonl,) = out.glob("gpu-check-dry-run-*.jsonl")
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return out, jsonl, records, proc.stdout


def _close(a: float, b: float, rel: float = 0.02) -> bool:
    return abs(a - b) <= rel * abs(b) + 1e-9


def test_dry_run_writes_every_measurement(dry_run):
    out, jsonl, records, stdout = dry_run
    assert records[0]["op"] == "env" and records[0]["dry_run"] is True and records[0]["gpu"] == "cpu"
    assert records[-1]["op"] == "done"
    assert all(r["op_status"] == "ok" for r in records), [r for r in records if r["op_status"] != "ok"]
    measured = {(r["family"], r["op"], r["impl"], r["variant"]) for r in records if r["op"] in FIELDS}
    expected = set()
    for family in ("sd15", "sdxl"):
        for op in ("sample", "rank"):
            expected |= {(family, op, "diffusers", "eager"), (family, op, "sail", "eager"),
                         (family, op, "sail", "channels_last")}
        expected |= {(family, "dpo", "diffusers", "eager"), (family, "dpo", "sail", "eager")}
    assert measured == expected
    for r in records:
        if r["op"] in FIELDS:
            assert FIELDS[r["op"]] <= r.keys(), FIELDS[r["op"]] - r.keys()
            assert r[THROUGHPUT[r["op"]]] > 0 and r["tflops"] > 0 and r["peak_gib"] is None  # no GPU memory on a CPU
    # the log and the summary table (one row per measurement) are written beside the JSON lines
    assert list(out.glob("gpu-check-dry-run-*.log"))
    table = jsonl.with_suffix(".md").read_text()
    assert len([line for line in table.splitlines() if line.startswith("| sd")]) == len(expected)
    assert table in stdout


def test_dry_run_models_follow_the_published_layout(dry_run):
    _, _, records, _ = dry_run
    models = {r["family"]: r for r in records if r["op"] == "model"}
    assert set(models) == {"sd15", "sdxl"}
    for r in models.values():
        assert r["latent_shape"] == [4, 8, 8] and r["resolution"] == 16
        assert r["fwd_gflop_counted"] > 0 and r["fwd_gflop_used"] == r["fwd_gflop_counted"]
        assert r["fwd_gflop_stated"] is None  # no published count exists for the shrunk dry-run shapes


def test_dry_run_ratios_and_mfu_follow_the_stated_formulas(dry_run):
    _, _, records, _ = dry_run
    peak = records[0]["peak_tflops"]
    assert peak == 1.0
    flops = {r["family"]: r["fwd_gflop_used"] for r in records if r["op"] == "model"}
    baselines = {(r["family"], r["op"]): r for r in records if r.get("impl") == "diffusers"}
    for r in records:
        if r["op"] not in FIELDS:
            continue
        f = flops[r["family"]]
        assert r["fwd_gflop"] == f
        per_s = r[THROUGHPUT[r["op"]]]
        if r["op"] == "sample":
            per_item = r["steps"] * 2 * f  # cfg: two forwards a step
            assert r["unet_batch"] == 2 * r["images"]
            assert _close(r["ms_per_step"], r["seconds"] / r["steps"] * 1e3)
            assert _close(per_s, r["images"] / r["seconds"])
        elif r["op"] == "rank":
            per_item = r["k_draws"] * 2 * f  # K draws under policy and reference
            assert r["k_draws"] == 10 and r["forwards"] == 2 * r["candidates"] * 10
            assert _close(per_s, r["candidates"] / r["seconds"])
        else:
            per_item = 8 * f  # 2 latents × (3F policy fwd+bwd + 1F reference fwd)
            assert r["pairs_per_step"] == r["micro_batch_pairs"] * r["accumulation"]
            assert _close(per_s, r["pairs_per_step"] / r["seconds_per_step"])
            assert _close(r["hw_tflops"], per_s * (10 if r["gradient_checkpointing"] else 8) * f / 1e3)
        assert _close(r["tflops"], per_s * per_item / 1e3)
        assert _close(r["mfu"], r["tflops"] / peak)
        if r["impl"] == "sail":
            base = baselines[(r["family"], r["op"])]
            key = THROUGHPUT[r["op"]]
            assert r[f"baseline_{key}"] == base[key]
            assert _close(r["ratio_vs_baseline"], per_s / base[key])
        else:
            assert "ratio_vs_baseline" not in r


def test_dry_run_uses_the_presets_settings(dry_run):
    _, _, records, _ = dry_run
    by = {(r["family"], r["op"], r.get("impl")): r for r in records if r["op"] in FIELDS and r["variant"] == "eager"}
    assert by["sd15", "sample", "sail"]["sampler"] == "ddpm" and by["sd15", "sample", "sail"]["guidance_scale"] == 7.5
    assert by["sdxl", "sample", "sail"]["sampler"] == "ddim" and by["sdxl", "sample", "sail"]["guidance_scale"] == 5.0
    sd15, sdxl = by["sd15", "dpo", "sail"], by["sdxl", "dpo", "sail"]
    assert (sd15["optimizer"], sd15["micro_batch_pairs"]) == ("adamw", 8)
    assert (sdxl["optimizer"], sdxl["micro_batch_pairs"]) == ("adafactor", 4)
    for r in (sd15, sdxl):
        assert r["mixed_precision"] == "bf16" and r["gradient_checkpointing"] is True
        assert r["reference_dtype"] == "bfloat16"
    assert by["sd15", "rank", "sail"]["batch"] == 128 and by["sdxl", "rank", "sail"]["batch"] == 32


@pytest.mark.parametrize("family, params", [("sd15", 859_520_964), ("sdxl", 2_567_463_684)])
def test_published_architectures_have_the_published_size_and_stated_flops(family, params):
    # built on the meta device: shapes only, so the real sizes cost no memory and no arithmetic
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    arch = published_architecture(family)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(arch.unet)
        side = arch.resolution // 8
        x, t, ctx = torch.randn(1, 4, side, side), torch.tensor([500]), torch.randn(1, *arch.context)
        added = {"added_cond_kwargs": {"text_embeds": torch.randn(1, arch.pooled), "time_ids": torch.randn(1, 6)}
                 } if arch.pooled else {}
    assert sum(p.numel() for p in unet.parameters()) == params  # the published UNets' parameter counts
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, t, ctx, **added)
    assert abs(counter.get_total_flops() / 1e9 - STATED_FWD_GFLOP[family]) < 0.1


def test_peak_by_gpu_name():
    assert peak_for("NVIDIA H200") == 989.0
    assert peak_for("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_for("NVIDIA GeForce RTX 4090") is None


def test_summary_lists_skips_and_errors():
    table = summary_table([
        {"family": "sdxl", "op": "sample", "impl": "sail", "variant": "compile", "op_status": "skipped",
         "reason": "time budget: 20 s left, needs about 265 s"},
        {"family": "sdxl", "op": "dpo", "impl": "sail", "variant": "eager", "op_status": "error",
         "error": "OutOfMemoryError: CUDA out of memory"},
    ])
    assert "skipped: time budget: 20 s left" in table and "error: OutOfMemoryError" in table


# --- which carried wheels get installed -----------------------------------------------------------

TAGS = {Tag("py3", "none", "any"), Tag("cp312", "cp312", "manylinux_2_17_x86_64")}


def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = (), tag: str = "py3-none-any") -> Path:
    path = folder / f"{name}-{version}-{tag}.whl"
    meta = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                      *(f"Requires-Dist: {r}" for r in requires)]) + "\n"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", meta)
    return path


def test_plan_installs_only_what_is_missing_or_out_of_range(tmp_path):
    _wheel(tmp_path, "diffusers", "0.42.1", ("importlib_metadata", "huggingface-hub>=1.32", "numpy"))
    _wheel(tmp_path, "diffusers", "0.43.0")  # outside the range: never chosen
    _wheel(tmp_path, "importlib_metadata", "10.2.0", ("zipp>=3.20",))
    _wheel(tmp_path, "zipp", "4.1.2")
    _wheel(tmp_path, "peft", "0.21.2")
    _wheel(tmp_path, "pydantic_core", "2.50.5", tag="cp399-cp399-manylinux_2_17_x86_64")  # not installable here
    wheels = gpu_env.wheelhouse(tmp_path, TAGS)
    needed = {"torch": SpecifierSet(">=2.4"), "diffusers": SpecifierSet(">=0.35,<0.43"),
              "peft": SpecifierSet(">=0.13"), "pydantic-core": SpecifierSet()}
    installed = {"torch": Version("2.11.0"), "huggingface-hub": Version("1.33.0"), "numpy": Version("2.5.2"),
                 "zipp": Version("3.19.0"), "peft": Version("0.17.0")}
    plan = gpu_env.plan(needed, installed, wheels)
    chosen = {w.name: str(w.version) for w in plan.install}
    # diffusers is missing, its importlib_metadata too, and the machine's zipp is older than that needs;
    # peft and numpy are there in range, so they are left alone
    assert chosen == {"diffusers": "0.42.1", "importlib-metadata": "10.2.0", "zipp": "4.1.2"}
    assert len(plan.problems) == 1 and plan.problems[0].startswith("pydantic-core")


def test_plan_never_carries_torch_and_names_what_is_missing(tmp_path):
    _wheel(tmp_path, "torch", "2.11.0")
    plan = gpu_env.plan({"torch": SpecifierSet(">=2.4")}, {}, gpu_env.wheelhouse(tmp_path, TAGS), "WH")
    assert plan.install == ()
    assert "torch>=2.4" in plan.problems[0] and "not installed" in plan.problems[0] and "CUDA build" in plan.problems[0]


def test_plan_reports_a_conflict_the_install_would_create(tmp_path):
    _wheel(tmp_path, "pydantic", "2.14.4", ("typing-extensions>=4.16",))
    _wheel(tmp_path, "typing_extensions", "4.16.0")
    installed = {"typing-extensions": Version("4.12.0")}
    plan = gpu_env.plan({"pydantic": SpecifierSet(">=2.6"), "typing-extensions": SpecifierSet("<4.13")},
                        installed, gpu_env.wheelhouse(tmp_path, TAGS))
    assert {w.name for w in plan.install} == {"pydantic", "typing-extensions"}
    assert any("conflicts with typing-extensions 4.16.0" in p for p in plan.problems)


def test_needed_ranges_come_from_pyproject():
    specs = gpu_env.needed_specifiers()
    assert set(specs) == set(gpu_env.NEEDED)
    assert Version("0.42.1") in specs["diffusers"] and Version("0.43.0") not in specs["diffusers"]
    assert Version("2.4") in specs["torch"] and Version("2.3") not in specs["torch"]
