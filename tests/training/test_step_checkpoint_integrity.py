"""Step checkpoints carry the SHA-256 of their files: a damaged newest checkpoint (flipped bytes, a
truncated or deleted file) is never resumed from; training resumes from the newest intact one, says
which, sets the damaged one aside, and ends with the same model as an uninterrupted run."""

from __future__ import annotations

import shutil

import pytest
import torch

from sail_core.config import TrainConfig
from sail_core.training.step_checkpoints import (
    DAMAGED_DIR,
    HASHES_FILE,
    checkpoint_problem,
    list_checkpoints,
    newest_good_checkpoint,
)
from tests.training.interruptible import Interrupt
from tests.training.interruptible import trainer as make_trainer

TRAIN = TrainConfig(effective_batch_pairs=4, micro_batch_pairs=2, max_steps=5, learning_rate=1e-3,
                    checkpoint_every=2, keep_checkpoints=2, warmup_steps=2)


def _trainer(seeded, steps_dir, stop_after: int | None = None):
    return make_trainer(seeded, steps_dir, TRAIN, stop_after)


@pytest.fixture(scope="module")
def runs(seeded, tmp_path_factory):
    """An uninterrupted run's weights, and the steps folder of a run killed after step 5's update was
    computed but before its checkpoint (steps 2 and 4 kept)."""
    root = tmp_path_factory.mktemp("runs")
    trainer, straight = _trainer(seeded, root / "straight")
    trainer.train()
    trainer, _ = _trainer(seeded, root / "interrupted", stop_after=5)
    with pytest.raises(Interrupt):
        trainer.train()
    assert [c.name for c in list_checkpoints(root / "interrupted")] == ["step-000002", "step-000004"]
    return {n: p.detach().clone() for n, p in straight.policy_unet.named_parameters()}, root / "interrupted"


def _flip(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # inside the tensor data: safetensors still parses it, the numbers are wrong
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "flipped trainable": ("trainable.safetensors", _flip, "does not have its recorded SHA-256"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_good_one(seeded, runs, tmp_path, case):
    straight, interrupted = runs
    steps = tmp_path / "steps"
    shutil.copytree(interrupted, steps)
    name, damage, problem = DAMAGE[case]
    damage(steps / "step-000004" / name)
    assert problem in checkpoint_problem(steps / "step-000004") and checkpoint_problem(steps / "step-000002") is None

    trainer, resumed = _trainer(seeded, steps)
    result = trainer.train()
    assert result.resumed_from == 2
    assert len(result.damaged) == 1 and result.damaged[0].startswith("step checkpoint step-000004 is damaged: ")
    assert problem in result.damaged[0] and "resuming from step-000002" in result.damaged[0]
    for name_, param in resumed.policy_unet.named_parameters():
        assert torch.equal(param, straight[name_]), name_
    # the damaged one is kept aside for inspection, never counted among (or resumed from) the kept ones
    assert [p.name.rsplit("-", 1)[0] for p in (steps / DAMAGED_DIR).iterdir()] == ["step-000004"]
    assert [c.name for c in list_checkpoints(steps)] == ["step-000004", "step-000005"]
    assert all(checkpoint_problem(c) is None for c in list_checkpoints(steps))


def test_every_checkpoint_damaged_starts_from_the_initial_weights(runs, tmp_path):
    _, interrupted = runs
    steps = tmp_path / "steps"
    shutil.copytree(interrupted, steps)
    for checkpoint in list_checkpoints(steps):
        _flip(checkpoint / "trainable.safetensors")
    resumable = newest_good_checkpoint(steps)
    assert resumable.checkpoint is None and [d[0] for d in resumable.damaged] == ["step-000004", "step-000002"]
    assert all(line.endswith("starting from the initial weights (the damaged one is kept in "
                             f"{where})") for line, (_, _, where) in zip(resumable.describe(), resumable.damaged))
    assert list_checkpoints(steps) == []


@pytest.mark.parametrize("name,damage,problem", [
    ("optimizer.safetensors", _truncate, "does not have its recorded SHA-256 (damaged or changed after it was saved)"),
    ("trainable.safetensors", lambda p: p.unlink(), "is missing"), ("state.json", lambda p: p.unlink(), "is missing"),
    (HASHES_FILE, lambda p: p.unlink(), "is missing")])
def test_a_truncated_or_deleted_file_is_passed_over(runs, tmp_path, name, damage, problem):
    _, interrupted = runs
    steps = tmp_path / "steps"
    shutil.copytree(interrupted, steps)
    damage(steps / "step-000004" / name)
    resumable = newest_good_checkpoint(steps)
    assert resumable.checkpoint == steps / "step-000002"
    assert resumable.damaged[0][:2] == ("step-000004", f"{steps / 'step-000004' / name} {problem}")
