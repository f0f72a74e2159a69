"""The world-pretraining GPU script's CPU dry run: every variant runs the library's own recipe in its own
process, exports its EMA weights as it goes, and ends with the weights ``pretrain`` gives in-process."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import world_pretrain
from sail_core.io.tensors import read_tensors
from sail_core.world.pretrain import PretrainConfig, pretrain

REPO = Path(__file__).resolve().parents[2]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**read_tensors(folder / "unet" / "diffusion_pytorch_model.safetensors"),
            **{f"text/{k}": v for k, v in read_tensors(folder / "text_encoder" / "model.safetensors").items()}}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("world-pretrain")
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    env.update(PYTHON=sys.executable, RESULTS_DIR=str(results), WHEELHOUSE=str(results / "no-wheelhouse"),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([str(REPO / "bench" / "world_pretrain_gpu.sh"), "--dry-run", "--export-every", "2"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = results / "world-pretrain"
    records = [json.loads(line) for line in (out / world_pretrain.LOG_NAME).read_text().splitlines()]
    return out, records


def test_every_variant_exports_as_it_goes_and_finishes(dry_run):
    out, records = dry_run
    for name, config in world_pretrain.DRY_RUN_VARIANTS.items():
        steps = [(r["step"], r["final"]) for r in records if r.get("variant") == name and "step" in r]
        assert steps == [(2, False), (config.steps, True)]
        assert [r["exit"] for r in records if r.get("variant") == name and "exit" in r] == [0]
        provenance = json.loads((out / name / "model" / "provenance.json").read_text())
        assert provenance["config"]["p_unsaid"] == json.loads(json.dumps(
            dataclasses.asdict(config)["p_unsaid"]))
    assert (out / "world_pretrain.log").read_text().count("2 of 2 variants finished") == 1


def test_a_variant_is_the_library_recipe(dry_run, tmp_path):
    """The script adds nothing to training: its model equals ``pretrain`` run here with the same config."""
    out, _ = dry_run
    config = world_pretrain.DRY_RUN_VARIANTS["tiny"]
    here = pretrain(PretrainConfig(**{**config.__dict__, "threads": 1}), tmp_path / "here", tmp_path / "tok")
    a, b = _weights(here), _weights(out / "tiny" / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = _weights(out / "tiny-pos80" / "model")  # position stated more often: other images, other weights
    assert not all(torch.equal(a[k], other[k]) for k in a)


def test_the_shipped_variant_is_the_shipped_models_first_stage():
    """The shipped model continues an earlier pretraining (README: the embedded world); its first stage, the
    innermost provenance, is ``VARIANTS["shipped"]``: settings that stage predates are at the values that
    change nothing (no high-noise share, no init)."""
    provenance = json.loads((REPO / "sail_core" / "world" / "base_model" / "provenance.json").read_text())
    while provenance.get("init_provenance"):
        provenance = provenance["init_provenance"]
    first = provenance["config"]
    variant = json.loads(json.dumps(dataclasses.asdict(world_pretrain.VARIANTS["shipped"])))
    assert {k: variant[k] for k in first} == first
    assert {k: v for k, v in variant.items() if k not in first and k != "device"} == {
        "high_noise_share": 0.0, "high_noise_from": 950, "init": None}


def test_an_unknown_variant_is_named(capsys):
    assert world_pretrain.main(["--dry-run", "--variants", "tiny,nope"]) == 2
    assert "unknown variant(s) nope; known: tiny, tiny-pos80" in capsys.readouterr().err
