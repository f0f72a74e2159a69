"""Diffusion-DPO under `accelerate launch` with two processes (gloo on the CPU; DDP on GPUs)."""

import torch

from sail_core.models.bundle import load_bundle, load_unet
from sail_core.models.lineage import UnetCheckpoint
from sail_core.stages.keys import ModelRef, train_key
from sail_core.stages.layout import RunLayout
from sail_core.stages.seed import prepare_seed
from tasks.context import RunContext
from tasks.launch import train_in_subprocesses

from .helpers import standard_pickapic, tiny_config


def test_two_process_training_writes_one_model(tiny_sd15, tmp_path):
    (tmp_path / "pool.txt").write_text("x\ny\n")
    config = tiny_config("sd15", tiny_sd15, standard_pickapic(tmp_path / "pap.parquet"), tmp_path / "pool.txt",
                         **{"runtime.train_processes": 2, "seed_train.micro_batch_pairs": 2,
                            "seed_train.effective_batch_pairs": 4, "seed_train.max_steps": 2})
    layout = RunLayout(tmp_path / "run")
    bundle = load_bundle(config.model)
    seed = prepare_seed(config, bundle, layout, layout.root / "seed")
    ctx = RunContext(run_dir=str(layout.root), config=config)
    base = ModelRef(UnetCheckpoint(), "base")
    out = layout.root / "round-00" / "train"
    out.mkdir(parents=True)
    record = train_in_subprocesses(ctx, train_key(config, seed.pairs.sha256, base, 0), seed.pairs, base, 0, out)
    assert record.steps == 2 and record.checkpoint.kind == "full"
    assert sorted(p.name for p in (out / "steps").iterdir()) == ["step-000001", "step-000002"]
    trained = load_unet(config.model, record.checkpoint, layout.root)
    initial = load_unet(config.model, UnetCheckpoint(), layout.root)
    changed = [not torch.equal(a, b) for a, b in zip(trained.parameters(), initial.parameters())]
    assert any(changed)
