"""``sail plan`` and the preflight's fit check on the real architectures' traces (fake tensors: nothing is
allocated, but tracing SDXL's stages takes about a minute of CPU, so these run with ``-m plan_traces``)."""

from __future__ import annotations

import pytest

from sail_core.config import load_config
from sail_core.plan.estimate import build_plan
from sail_core.plan.gpus import gpu
from sail_core.preflight import memory_problems

pytestmark = pytest.mark.plan_traces


def test_the_sdxl_preset_does_not_fit_a_24_gb_card_and_preflight_names_the_micro_batch():
    problems = memory_problems(load_config("sdxl"), gpu("RTX 4090"))
    dpo = [p for p in problems if p.startswith("round_train.micro_batch_pairs=4: DPO needs an estimated ")]
    assert len(dpo) == 1, problems
    # full fine-tuning in float32 with a bf16 reference: 2.57B × (4 + 4 + 2) bytes before any activation
    assert "the RTX 4090 has 24.0 GiB; not even 1 fits" in dpo[0] and "model.train_mode=lora" in dpo[0]
    assert any(p.startswith("seed_train.micro_batch_pairs=4: ") for p in problems)
    assert memory_problems(load_config("sdxl"), gpu("H100")) == []


def test_the_sdxl_plan_counts_the_published_forward_and_fits_an_h100():
    plan = build_plan(load_config("sdxl"), gpu("H100"), 8)
    assert plan.unet_params == 2_567_463_684
    assert plan.forward_gflop == pytest.approx(6761.2, abs=0.1)  # the H100 anchor's flop_counter count
    generate, rank, dpo, _ = plan.rounds[0].stages
    assert dpo.gpus == 8 and generate.gpus == 8
    assert dpo.memory.largest_fitting(gpu("H100").memory_bytes) >= 4
