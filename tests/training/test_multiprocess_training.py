"""Diffusion-DPO under `accelerate launch` with two processes (gloo on the CPU; DDP on GPUs)."""

import torch

from sail_core.models.bundle import load_unet
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.run.layout import RunLayout
from sail_core.run.lineage import base_model
from sail_core.run.runner import run_stage
from sail_core.run.stage import NoInputs
from sail_core.stages import SEED, TRAIN, TrainInputs
from tests.builders import standard_pickapic, tiny_config


def test_two_process_training_writes_one_model(tiny_sd15, tmp_path):
    (tmp_path / "pool.txt").write_text("x\ny\n")
    config = tiny_config("sd15", tiny_sd15, standard_pickapic(tmp_path / "pap.parquet"), tmp_path / "pool.txt",
                         **{"runtime.train_processes": 2, "seed_train.micro_batch_pairs": 2,
                            "seed_train.effective_batch_pairs": 4, "seed_train.max_steps": 2})
    layout = RunLayout(tmp_path / "run")
    seed = run_stage(SEED, config, layout, NoInputs())
    record = run_stage(TRAIN, config, layout, TrainInputs(round_index=0, pairs=seed.pairs, init=base_model(config)))
    checkpoint = record.model.checkpoint
    assert record.steps == 2 and checkpoint.kind == "full"
    out = layout.root / checkpoint.weights
    assert not (out.parent / "steps").exists()  # resume state is dropped once the model is written
    trained = load_unet(config.model, checkpoint, layout.root)
    initial = load_unet(config.model, UnetCheckpoint(), layout.root)
    changed = [not torch.equal(a, b) for a, b in zip(trained.parameters(), initial.parameters())]
    assert any(changed)
