"""Diffusion-DPO training: exact resume from a step checkpoint, the NaN guard, optimizer state round trips."""

import math

import pytest
import torch

from sail_core.config import TrainConfig
from sail_core.errors import NonFiniteLossError
from sail_core.io.tensors import read_tensors, write_tensors
from sail_core.models.bundle import load_bundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import load_for_training
from sail_core.run.layout import RunLayout
from sail_core.run.stage import NoInputs
from sail_core.stages.seed import prepare_seed
from sail_core.training.pair_dataset import PairDataset
from sail_core.training.step_checkpoints import list_checkpoints
from sail_core.training.trainer import DpoTrainer
from tests.builders import stage_ctx, standard_pickapic, tiny_config


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def seeded(tiny_sd15, tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer")
    (root / "pool.txt").write_text("x\ny\n")
    config = tiny_config("sd15", tiny_sd15, standard_pickapic(root / "pap.parquet"), root / "pool.txt")
    layout = RunLayout(root / "run")
    bundle = load_bundle(config.model)
    seed = prepare_seed(stage_ctx(config, layout, "seed"), NoInputs())
    return config, bundle, layout, seed


def _train(seeded, steps_dir, train: TrainConfig, stop_after: int | None = None, mode: str = "full"):
    config, bundle, layout, seed = seeded
    model_config = config.model.model_copy(update={"train_mode": mode})
    denoisers = load_for_training(model_config, layout.root, UnetCheckpoint(), bundle.device)
    dataset = PairDataset.from_file(seed.pairs.resolve(layout.root), layout.root)

    def on_step(step, total, metrics):
        if stop_after is not None and step == stop_after:
            raise Interrupt

    trainer = DpoTrainer(bundle, denoisers, dataset, train, steps_dir, on_step=on_step)
    return trainer, denoisers


@pytest.mark.parametrize("optimizer,mode", [("adamw", "full"), ("adafactor", "full"), ("adamw", "lora")])
def test_interrupted_and_resumed_training_matches_an_uninterrupted_run(seeded, tmp_path, optimizer, mode):
    train = TrainConfig(effective_batch_pairs=4, micro_batch_pairs=2, max_steps=5, learning_rate=1e-3,
                        checkpoint_every=2, keep_checkpoints=2, optimizer=optimizer, warmup_steps=2)
    trainer, straight = _train(seeded, tmp_path / "straight", train, mode=mode)
    straight_metrics = trainer.train().metrics

    trainer, _ = _train(seeded, tmp_path / "resumed", train, stop_after=3, mode=mode)
    with pytest.raises(Interrupt):
        trainer.train()
    assert [c.name for c in list_checkpoints(tmp_path / "resumed")] == ["step-000002"]
    trainer, resumed = _train(seeded, tmp_path / "resumed", train, mode=mode)  # a fresh process, in effect
    result = trainer.train()
    assert result.resumed_from == 2
    for (name, a), (_, b) in zip(straight.policy_unet.named_parameters(), resumed.policy_unet.named_parameters()):
        assert torch.equal(a, b), name
    assert [m["loss"] for m in result.metrics] == [m["loss"] for m in straight_metrics]
    assert [c.name for c in list_checkpoints(tmp_path / "resumed")] == ["step-000004", "step-000005"]


def test_first_step_loss_is_log2_and_lr_warms_up(seeded, tmp_path):
    train = TrainConfig(effective_batch_pairs=4, micro_batch_pairs=4, max_steps=2, learning_rate=1e-3,
                        warmup_steps=2)
    trainer, _ = _train(seeded, tmp_path / "s", train)
    metrics = trainer.train().metrics
    assert math.isclose(metrics[0]["loss"], math.log(2), rel_tol=1e-5)  # policy == reference before step 1
    assert metrics[0]["lr"] == pytest.approx(5e-4) and metrics[1]["lr"] == pytest.approx(1e-3)


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(seeded, tmp_path):
    _, _, layout, _ = seeded
    one_step = TrainConfig(effective_batch_pairs=8, micro_batch_pairs=8, max_steps=1, learning_rate=1e-3,
                           checkpoint_every=1)
    trainer, _ = _train(seeded, tmp_path / "nan", one_step)
    trainer.train()
    # the cached seed latents go bad after step 1 was checkpointed: step 2's forward yields NaN
    latent_file = layout.root / "seed" / "latents-00000.safetensors"
    clean = read_tensors(latent_file)["latents"]
    write_tensors(latent_file, {"latents": torch.full_like(clean, float("nan"))}, overwrite=True)
    try:
        trainer, _ = _train(seeded, tmp_path / "nan", one_step.model_copy(update={"max_steps": 3}))
        with pytest.raises(NonFiniteLossError, match="step 2"):
            trainer.train()
    finally:
        write_tensors(latent_file, {"latents": clean}, overwrite=True)
    assert [c.name for c in list_checkpoints(tmp_path / "nan")] == ["step-000001"]
