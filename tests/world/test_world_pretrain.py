"""Pretraining the world model is resumable: a run killed part-way and rerun continues from its last
checkpoint and ends with the same bytes as a run never stopped; checkpoints of another config are
refused naming what differs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from sail_core.errors import InputError
from sail_core.io.tensors import read_tensors
from sail_core.training.step_checkpoints import list_checkpoints
from sail_core.world.model import Architecture
from sail_core.world.pretrain import PretrainConfig, _timesteps, export_checkpoint, pretrain

TINY = PretrainConfig(steps=6, batch_size=4, warmup_steps=2, threads=1,
                      architecture=Architecture(channels=(16, 16), text_width=16, text_layers=1))


class Killed(Exception):
    pass


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {**read_tensors(folder / "unet" / "diffusion_pytorch_model.safetensors"),
            **{f"text/{k}": v for k, v in read_tensors(folder / "text_encoder" / "model.safetensors").items()}}


def test_a_killed_pretraining_resumes_to_the_same_weights(tmp_path):
    straight = pretrain(TINY, tmp_path / "straight", tmp_path / "tok")

    def die_after_four(step: int, loss: float) -> None:
        if step == 4:
            raise Killed

    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(Killed):
        pretrain(TINY, tmp_path / "resumed", tmp_path / "tok", die_after_four,
                 checkpoint_dir=checkpoints, checkpoint_every=2)
    assert [p.name for p in list_checkpoints(checkpoints)] == ["step-000004"]  # only the newest is kept
    assert not (tmp_path / "resumed").exists()

    steps = []
    resumed = pretrain(TINY, tmp_path / "resumed", tmp_path / "tok", lambda s, _: steps.append(s),
                       checkpoint_dir=checkpoints, checkpoint_every=2)
    assert steps == [5, 6]  # it continued after the last checkpoint instead of starting over
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], _weights(pretrain(
        PretrainConfig(**{**TINY.__dict__, "steps": 5}), tmp_path / "five", tmp_path / "tok"))[k]) for k in a)


def test_checkpoints_of_another_config_are_refused(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    pretrain(TINY, tmp_path / "a", tmp_path / "tok", checkpoint_dir=checkpoints, checkpoint_every=3)
    other = PretrainConfig(**{**TINY.__dict__, "batch_size": 8, "learning_rate": 1e-4})
    with pytest.raises(InputError, match=r"batch_size, learning_rate") as raised:
        pretrain(other, tmp_path / "b", tmp_path / "tok", checkpoint_dir=checkpoints)
    assert "config.json" in str(raised.value)


def test_a_checkpoint_exports_its_ema_weights_as_a_model(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    with pytest.raises(InputError, match="no step checkpoint"):
        export_checkpoint(TINY, checkpoints, tmp_path / "none")
    final = pretrain(TINY, tmp_path / "final", tmp_path / "tok", checkpoint_dir=checkpoints, checkpoint_every=3)
    exported = export_checkpoint(TINY, checkpoints, tmp_path / "exported")  # the step-6 checkpoint: the final EMA
    a, b = _weights(final), _weights(exported)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((exported / "provenance.json").read_text())["step"] == 6


@pytest.mark.skipif(torch.cuda.is_available(), reason="asserts the error of a machine without a GPU")
@pytest.mark.parametrize("device, message", [("cuda", "has no CUDA device"), ("gpu", "not a torch device: 'gpu'")])
def test_a_device_that_is_not_there_is_named(tmp_path, device, message):
    with pytest.raises(InputError, match=message) as raised:
        pretrain(PretrainConfig(**{**TINY.__dict__, "device": device}), tmp_path / "m", tmp_path / "tok")
    assert "device" in str(raised.value) and not (tmp_path / "m").exists()


def test_pretraining_leaves_the_process_torch_settings_as_it_found_them(tmp_path):
    """It sets threads, deterministic algorithms and the global seed for itself; a test or flow run after
    it in the same process must not inherit them (a flow's byte-identity check once did)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2 if threads == 1 else 1)
    torch.manual_seed(1234)
    expected_draw = torch.rand(3)
    torch.manual_seed(1234)
    try:
        config = PretrainConfig(**{**TINY.__dict__, "steps": 2})
        pretrain(config, tmp_path / "m", tmp_path / "tok", checkpoint_dir=tmp_path / "c", checkpoint_every=1)
        export_checkpoint(config, tmp_path / "c", tmp_path / "e")
        assert torch.get_num_threads() == (2 if threads == 1 else 1)
        assert torch.are_deterministic_algorithms_enabled() == deterministic
        assert torch.equal(torch.rand(3), expected_draw)
    finally:
        torch.set_num_threads(threads)


def test_a_continued_pretraining_starts_from_its_init_weights_and_names_them(tmp_path):
    first = pretrain(TINY, tmp_path / "first", tmp_path / "tok")
    # learning rate 0: the continued run must end exactly on the weights it started from
    still = PretrainConfig(**{**TINY.__dict__, "steps": 2, "learning_rate": 0.0, "init": str(first)})
    continued = pretrain(still, tmp_path / "continued", tmp_path / "tok")
    a, b = _weights(first), _weights(continued)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    provenance = json.loads((continued / "provenance.json").read_text())
    assert provenance["config"]["init"] == str(first)
    assert provenance["init_provenance"] == json.loads((first / "provenance.json").read_text())
    unet_bytes = (first / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    assert provenance["init_sha256"]["unet"] == hashlib.sha256(unet_bytes).hexdigest()

    moving = PretrainConfig(**{**TINY.__dict__, "steps": 2, "init": str(first)})
    moved = _weights(pretrain(moving, tmp_path / "moved", tmp_path / "tok"))
    assert not all(torch.equal(a[k], moved[k]) for k in a)


def test_an_init_of_another_architecture_or_no_model_is_named(tmp_path):
    first = pretrain(TINY, tmp_path / "first", tmp_path / "tok")
    wider = PretrainConfig(**{**TINY.__dict__, "init": str(first),
                              "architecture": Architecture(channels=(32, 32), text_width=16, text_layers=1)})
    with pytest.raises(InputError, match="do not fit the configured architecture") as raised:
        pretrain(wider, tmp_path / "wider", tmp_path / "tok")
    assert "diffusion_pytorch_model.safetensors" in str(raised.value) and not (tmp_path / "wider").exists()
    with pytest.raises(InputError, match="not a world model folder") as raised:
        PretrainConfig(init=str(tmp_path / "tok"))
    assert "tok" in str(raised.value)


@pytest.mark.parametrize("field, value", [("high_noise_share", 1.5), ("high_noise_from", 1000)])
def test_a_high_noise_setting_out_of_range_is_named(field, value):
    with pytest.raises(InputError, match=field):
        PretrainConfig(**{field: value})


def test_a_high_noise_share_moves_that_share_of_timesteps_to_the_top_levels():
    """Share s from t0: P(t >= t0) = s + (1 - s)·(1000 - t0)/1000; share 0 draws what the shipped recipe drew."""
    draw = lambda config: _timesteps(config, 1000, 20_000, torch.Generator().manual_seed(0))  # noqa: E731
    plain = draw(PretrainConfig())
    assert torch.equal(plain, torch.randint(0, 1000, (20_000,), generator=torch.Generator().manual_seed(0)))
    mixed = draw(PretrainConfig(high_noise_share=0.25, high_noise_from=950))
    assert abs((mixed >= 950).float().mean().item() - (0.25 + 0.75 * 0.05)) < 0.01
    assert mixed.min() >= 0 and mixed.max() <= 999
    assert (draw(PretrainConfig(high_noise_share=1.0, high_noise_from=990)) >= 990).all()
