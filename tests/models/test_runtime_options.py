"""``runtime.channels_last`` and ``runtime.compile``: the UNets that sample and rank are loaded with them,
and their outputs equal the eager ones within float rounding."""

from __future__ import annotations

import shutil

import pytest
import torch
from diffusers import UNet2DConditionModel

from sail_core.config import ModelConfig, RuntimeConfig, load_config
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import load_for_inference, load_policy


def _inputs(batch: int, side: int, width: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, side, side, generator=g), torch.randint(0, 1000, (batch,), generator=g),
            torch.randn(batch, 7, width, generator=g))


def _channels_last(unet) -> bool:
    convs = [m.weight for m in unet.modules() if isinstance(m, torch.nn.Conv2d)]
    return bool(convs) and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)


def test_runtime_options_are_config_fields():
    config = load_config("world", ["runtime.compile=true", "runtime.channels_last=true"])
    assert config.runtime.compile and config.runtime.channels_last
    assert not load_config("world").runtime.compile


@pytest.mark.parametrize("kind", ["full", "base"])
def test_channels_last_ranking_unets_match_eager(tiny_sd15, kind):
    # full: policy and reference are two UNets (TwoUnets); base: adapter views of one UNet (AdapterViews)
    config = ModelConfig(family="sd15", source=str(tiny_sd15), resolution=32, local_files_only=True)
    checkpoint = UnetCheckpoint(kind="full", weights="unet", label="a") if kind == "full" else UnetCheckpoint()
    eager = load_for_inference(config, tiny_sd15, checkpoint, checkpoint)
    fast = load_for_inference(config, tiny_sd15, checkpoint, checkpoint, runtime=RuntimeConfig(channels_last=True))
    unets = [fast.policy_unet] + ([fast.reference_unet] if kind == "full" else [])
    assert all(_channels_last(u) for u in unets) and not _channels_last(eager.policy_unet)
    x, t, ctx = _inputs(3, 16, 32)
    with torch.no_grad():
        for name in ("policy", "reference"):
            want = getattr(eager, name)(x, t, encoder_hidden_states=ctx)
            got = getattr(fast, name)(x, t, encoder_hidden_states=ctx)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def _minimal_unet_folder(folder):
    # the smallest UNet2DConditionModel with every kind of block (resnet, cross-attention, mid block):
    # inductor compiles one C++ kernel per fused op on a CPU, so size is what keeps this test short
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, block_out_channels=(8,), layers_per_block=1, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
                                cross_attention_dim=8, attention_head_dim=2)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    return folder


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on a CPU needs a C++ compiler (inductor builds its kernels with it)")
def test_compiled_channels_last_sampling_unet_matches_eager(tmp_path):
    folder = _minimal_unet_folder(tmp_path)
    config = ModelConfig(family="sd15", source=str(folder), resolution=16, local_files_only=True)
    eager = load_policy(config, ".", UnetCheckpoint())
    fast = load_policy(config, ".", UnetCheckpoint(), runtime=RuntimeConfig(compile=True, channels_last=True))
    assert _channels_last(fast.policy_unet)
    x, t, ctx = _inputs(2, 8, 8)
    with torch.no_grad():
        want = eager.policy(x, t, encoder_hidden_states=ctx)
        got = fast.policy(x, t, encoder_hidden_states=ctx)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert fast.policy_unet._compiled_call_impl is not None  # compiled, not left eager
    assert fast.policy_unet.dtype == torch.float32  # the compiled module is still the UNet, attributes intact
