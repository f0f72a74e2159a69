"""Diffusion-DPO training: exact resume from a step checkpoint, divergence detection and the checkpoint it
keeps, optimizer state round trips."""

import math

import pytest
import torch

from sail_core.config import TrainConfig
from sail_core.errors import NonFiniteLossError, TrainingDivergedError
from sail_core.io.tensors import read_tensors, write_tensors
from sail_core.training.divergence import Divergence, DivergenceGuard
from sail_core.training.step_checkpoints import list_checkpoints
from tests.training.interruptible import Interrupt
from tests.training.interruptible import trainer as make_trainer


@pytest.mark.parametrize("optimizer,mode", [("adamw", "full"), ("adafactor", "full"), ("adamw", "lora")])
def test_interrupted_and_resumed_training_matches_an_uninterrupted_run(seeded, tmp_path, optimizer, mode):
    train = TrainConfig(effective_batch_pairs=4, micro_batch_pairs=2, max_steps=5, learning_rate=1e-3,
                        checkpoint_every=2, keep_checkpoints=2, optimizer=optimizer, warmup_steps=2)
    trainer, straight = make_trainer(seeded, tmp_path / "straight", train, mode=mode)
    straight_metrics = trainer.train().metrics

    trainer, _ = make_trainer(seeded, tmp_path / "resumed", train, stop_after=3, mode=mode)
    with pytest.raises(Interrupt):
        trainer.train()
    assert [c.name for c in list_checkpoints(tmp_path / "resumed")] == ["step-000002"]
    trainer, resumed = make_trainer(seeded, tmp_path / "resumed", train, mode=mode)  # a fresh process, in effect
    result = trainer.train()
    assert result.resumed_from == 2
    for (name, a), (_, b) in zip(straight.policy_unet.named_parameters(), resumed.policy_unet.named_parameters()):
        assert torch.equal(a, b), name
    assert [m["loss"] for m in result.metrics] == [m["loss"] for m in straight_metrics]
    assert [c.name for c in list_checkpoints(tmp_path / "resumed")] == ["step-000004", "step-000005"]


def test_lora_with_gradient_checkpointing_trains_as_without_it(seeded, tmp_path):
    """Policy and reference are adapter views of one UNet: the checkpointed policy forward that backward
    reruns must see the policy's adapters, whichever view ran last (SDXL's preset: LoRA, checkpointing)."""
    runs = {}
    for checkpointing in (False, True):
        train = TrainConfig(effective_batch_pairs=4, micro_batch_pairs=2, max_steps=2, learning_rate=1e-3,
                            warmup_steps=0, gradient_checkpointing=checkpointing)
        trainer, denoisers = make_trainer(seeded, tmp_path / str(checkpointing), train, mode="lora")
        runs[checkpointing] = (trainer.train().metrics, dict(denoisers.policy_unet.named_parameters()))
    (plain_metrics, plain), (ckpt_metrics, ckpt) = runs[False], runs[True]
    assert [m["loss"] for m in ckpt_metrics] == pytest.approx([m["loss"] for m in plain_metrics], rel=1e-5)
    assert plain_metrics[1]["loss"] != plain_metrics[0]["loss"]  # the adapters trained
    for name, value in plain.items():
        torch.testing.assert_close(ckpt[name], value, rtol=1e-5, atol=1e-6)


def test_first_step_loss_is_log2_and_lr_warms_up(seeded, tmp_path):
    train = TrainConfig(effective_batch_pairs=4, micro_batch_pairs=4, max_steps=2, learning_rate=1e-3,
                        warmup_steps=2)
    trainer, _ = make_trainer(seeded, tmp_path / "s", train)
    metrics = trainer.train().metrics
    assert math.isclose(metrics[0]["loss"], math.log(2), rel_tol=1e-5)  # policy == reference before step 1
    assert metrics[0]["lr"] == pytest.approx(5e-4) and metrics[1]["lr"] == pytest.approx(1e-3)


def test_non_finite_loss_stops_and_keeps_the_newest_checkpoint_a_later_step_vouched_for(seeded, tmp_path):
    _, _, layout, _ = seeded
    two_steps = TrainConfig(effective_batch_pairs=8, micro_batch_pairs=8, max_steps=2, learning_rate=1e-3,
                            checkpoint_every=1, keep_checkpoints=5)
    trainer, _ = make_trainer(seeded, tmp_path / "nan", two_steps)
    trainer.train()
    # the cached seed latents go bad after step 2 was checkpointed: step 3's forward yields NaN
    latent_file = layout.root / "seed" / "latents-00000.safetensors"
    clean = read_tensors(latent_file)["latents"]
    write_tensors(latent_file, {"latents": torch.full_like(clean, float("nan"))}, overwrite=True)
    try:
        trainer, _ = make_trainer(seeded, tmp_path / "nan", two_steps.model_copy(update={"max_steps": 4}))
        with pytest.raises(NonFiniteLossError, match="at step 3: non-finite DPO loss") as failure:
            trainer.train()
    finally:
        write_tensors(latent_file, {"latents": clean}, overwrite=True)
    # step 3 ran on step 2's weights and failed: step 2 is set aside; step 2 ran on step 1's without trouble
    assert [c.name for c in list_checkpoints(tmp_path / "nan")] == ["step-000001"]
    assert [p.name.rsplit("-", 1)[0] for p in (tmp_path / "nan" / "diverged").iterdir()] == ["step-000002"]
    assert "kept step-000001" in str(failure.value) and "set aside step-000002" in str(failure.value)


@pytest.mark.parametrize("weight_check", [True, False])
def test_a_diverging_run_stops_before_a_diverged_checkpoint_is_trusted(seeded, tmp_path, weight_check):
    """Learning rate 1e6: the weights are ~1e6 after one step. With the weight check the run stops right after
    that step, before writing a checkpoint; without it, the next step's loss is non-finite and the step-1
    checkpoint, which holds those weights, is set aside: no diverged weights are ever offered for resuming."""
    train = TrainConfig(effective_batch_pairs=4, micro_batch_pairs=4, max_steps=6, learning_rate=1e6,
                        checkpoint_every=1, keep_checkpoints=10,
                        divergence_weight_growth=10.0 if weight_check else None)
    trainer, _ = make_trainer(seeded, tmp_path / "steps", train)
    with pytest.raises(TrainingDivergedError) as failure:
        trainer.train()
    message = str(failure.value)
    assert "no checkpoint is trusted: a rerun starts from the initial weights" in message
    assert list_checkpoints(tmp_path / "steps") == []
    if weight_check:
        assert message.startswith("training diverged at step 1: the trainable weights' norm grew to")
        assert not (tmp_path / "steps" / "diverged").exists()
    else:
        assert message.startswith("training diverged at step 2:")
        (aside,) = (tmp_path / "steps" / "diverged").iterdir()
        assert aside.name.startswith("step-000001-")
        assert max(t.abs().max().item() for t in read_tensors(aside / "trainable.safetensors").values()) > 1e4


def test_the_guard_measures_spikes_against_running_medians():
    guard = DivergenceGuard(loss_spike=10.0, grad_spike=100.0, weight_growth=10.0, window=3,
                            initial_weight_norm=2.0)
    for step, (loss, grad) in enumerate([(0.69, 1.0), (0.5, 3.0), (0.3, 2.0), (0.2, 5.0)], start=1):
        assert guard.check_step(step, loss, grad) is None
    # the loss median of the last 3 (0.5, 0.3, 0.2) is 0.3, below ln 2: spikes are judged against ln 2
    assert guard.check_step(5, 6.9, 1.0) is None  # 6.9 < 10 × ln 2 = 6.93
    spike = guard.check_step(6, 7.0, 1.0)  # median of (0.3, 0.2, 6.9) is 0.3 → floor ln 2 → limit 6.93
    assert spike == Divergence(6, "loss 7 is over 10× its running median (0.6931)", 5)
    # gradient norms of the last 3 accepted steps: 2, 5, 1 → median 2 → limit 200
    assert guard.check_step(6, 0.5, 200.0) is None
    assert guard.check_step(7, 0.5, 501.0).reason == "gradient norm 501 is over 100× its running median (5)"
    assert guard.check_step(7, float("nan"), 1.0).reason == "non-finite DPO loss (nan)"
    assert guard.check_step(7, 0.5, float("inf")).weights_of_step == 6
    assert guard.check_weights(7, 20.0) is None
    grown = guard.check_weights(7, 20.1)
    assert grown.weights_of_step == 7 and "grew to 20.1, over 10× its 2 at the start" in grown.reason


def test_by_default_a_hard_batch_does_not_stop_a_healthy_run():
    """A DPO loss at beta 5000 is heavy-tailed: a healthy world round (ranking experiment, seed 1) had a
    batch at 9.79 against a running median of 0.86 with ordinary gradients. The default guard lets it
    pass and still stops a gradient spike."""
    config = TrainConfig()
    guard = DivergenceGuard(config.divergence_loss_spike, config.divergence_grad_spike,
                            config.divergence_weight_growth)
    for step, loss in enumerate([0.95, 0.86, 0.80, 0.86, 0.90], start=1):
        assert guard.check_step(step, loss, 240.0) is None
    assert guard.check_step(6, 9.79, 260.0) is None
    assert "gradient norm" in guard.check_step(7, 0.9, 240.0 * 101).reason


def test_divergence_guards_are_not_in_the_training_key():
    from types import SimpleNamespace

    from sail_core.config import load_config
    from sail_core.stages.train import train_settings

    inputs = SimpleNamespace(round_index=1)
    base = train_settings(load_config("world"), inputs)
    guarded = train_settings(load_config("world", {"round_train.divergence_loss_spike": 10.0,
                                                   "round_train.divergence_grad_spike": None}), inputs)
    assert guarded == base  # a run that finishes computes the same whichever guards watched it
    assert train_settings(load_config("world", {"round_train.learning_rate": 2e-4}), inputs) != base
