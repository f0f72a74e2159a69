"""``sail plan``: FLOPs and memory traced on fake tensors against hand counts, the published parameter counts,
the time arithmetic, the preflight's fit check and the command's errors."""

from __future__ import annotations

import math

import pytest
import torch

from sail_core.config import load_config
from sail_core.plan.estimate import GIB, MARGIN, build_plan
from sail_core.plan.gpus import GPUS, gpu
from sail_core.plan.trace import fake_mode, trace
from sail_core.plan.workloads import unet_parameters
from tests.cli.test_errors import one_line_error, sail

# --- FLOPs ------------------------------------------------------------------------------------------

TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8,), layers_per_block=1,
                 down_block_types=("CrossAttnDownBlock2D",), up_block_types=("CrossAttnUpBlock2D",),
                 mid_block_type=None, cross_attention_dim=8, attention_head_dim=2, norm_num_groups=4)
"""One cross-attention level, 8 channels, 2 heads of 4, 8×8 latents; no mid block, no resampling."""


def conv(cin: int, cout: int, k: int, pixels: int) -> int:
    return 2 * cout * pixels * cin * k * k


def linear(i: int, o: int, rows: int = 1) -> int:
    return 2 * rows * i * o


def attention(heads: int, queries: int, keys: int, head_dim: int) -> int:
    return 2 * 2 * heads * queries * keys * head_dim  # QKᵀ and (softmax)·V


def hand_count_tiny_unet(context_tokens: int) -> int:
    """FLOPs of one image through TINY_UNET, layer by layer (multiply-adds × 2; biases, norms and
    activations are not FLOPs in PyTorch's counter)."""
    px, c, t, tokens = 64, 8, 32, context_tokens
    time_embedding = linear(8, t) + linear(t, t)

    def resnet(cin: int) -> int:
        return conv(cin, c, 3, px) + linear(t, c) + conv(c, c, 3, px) + (conv(cin, c, 1, px) if cin != c else 0)

    def transformer() -> int:
        self_attention = 4 * linear(c, c, px) + attention(2, px, px, 4)
        cross_attention = 2 * linear(c, c, px) + 2 * linear(8, c, tokens) + attention(2, px, tokens, 4)
        feed_forward = linear(c, 2 * 4 * c, px) + linear(4 * c, c, px)  # GEGLU: 8 → 2 × 32, then 32 → 8
        return conv(c, c, 1, px) + self_attention + cross_attention + feed_forward + conv(c, c, 1, px)

    down = resnet(c) + transformer()
    up = 2 * (resnet(2 * c) + transformer())  # two resnets on the skip concatenations (16 channels)
    return conv(4, c, 3, px) + time_embedding + down + up + conv(c, 4, 3, px)


def test_tiny_unet_forward_flops_equal_a_hand_count():
    from diffusers import UNet2DConditionModel

    batch, tokens = 3, 5
    with fake_mode():
        unet = UNet2DConditionModel(**TINY_UNET).eval()
        x, ctx = torch.zeros(batch, 4, 8, 8), torch.zeros(batch, tokens, 8)
        t = torch.zeros(batch, dtype=torch.long)
        with torch.no_grad():
            counted = trace(lambda _: unet(x, t, ctx), unet).flops
    assert counted == batch * hand_count_tiny_unet(tokens)


def test_the_real_unets_have_the_published_parameter_counts():
    from sail_core.config import ModelConfig

    assert unet_parameters(ModelConfig(family="sd15", source="-")) == 859_520_964      # 860M, SD v1 model card
    assert unet_parameters(ModelConfig(family="sdxl", source="-")) == 2_567_463_684    # 2.6B, SDXL paper


# --- memory ---------------------------------------------------------------------------------------------

def test_a_tiny_dpo_step_holds_its_parameters_gradients_optimizer_state_and_saved_activations():
    """A DPO step of a two-layer MLP denoiser (the project's per-sample error and loss, AdamW in its steady
    state, the previous micro-batch's gradients present), traced on fake tensors: the peak, during the
    backward of the ReLU, is every byte a hand count says is alive there."""
    from sail_core.algorithm.dpo_loss import dpo_loss
    from sail_core.algorithm.noising import per_sample_mse

    d, h, rows, f32 = 64, 256, 512, 4  # 256 pairs: 512 latents of 64 values
    with fake_mode():
        def mlp() -> torch.nn.Module:
            return torch.nn.Sequential(torch.nn.Linear(d, h, bias=False), torch.nn.ReLU(),
                                       torch.nn.Linear(h, d, bias=False))

        policy, reference = mlp(), mlp().requires_grad_(False)
        optimizer = torch.optim.AdamW(policy.parameters())
        for p in policy.parameters():
            optimizer.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                  "exp_avg_sq": torch.zeros_like(p)}
            p.grad = torch.zeros_like(p)  # accumulating: the first micro-batch's gradients
        x, target = torch.zeros(rows, d), torch.zeros(rows, d)

        def step(_) -> None:
            with torch.no_grad():
                ref_w, ref_l = per_sample_mse(reference(x), target).chunk(2)
            mse_w, mse_l = per_sample_mse(policy(x), target).chunk(2)
            dpo_loss(mse_w, mse_l, ref_w, ref_l, 5000.0).loss.backward()

        t = trace(step, policy, reference, optimizer, x, target)

    weight = d * h * f32
    parameters = 4 * weight                    # two layers each of the policy and the reference
    gradients = 2 * weight                     # the policy's
    optimizer_state = 2 * 2 * weight + 2 * f32  # AdamW: two moments per weight, one step count each
    inputs = 2 * rows * d * f32                # noisy latents and targets, made before the step
    saved = rows * h * f32                     # the ReLU's output, saved by it and by the second layer
    in_flight = 2 * rows * h * f32             # the gradients w.r.t. the ReLU's output and input
    per_sample = 3 * rows * f32                # the per-sample errors and the DPO terms (vectors of ≤ 512 floats)
    assert t.at_peak["Parameter"] == parameters
    assert t.at_peak["Gradient"] == gradients
    assert t.at_peak["Optstate"] == optimizer_state
    assert t.at_peak["Other"] == inputs
    assert t.at_peak["Temp"] == in_flight
    assert saved <= t.at_peak["Activation"] <= saved + per_sample
    hand = parameters + gradients + optimizer_state + inputs + saved + in_flight
    assert hand <= t.peak_bytes <= hand + per_sample


# --- the arithmetic of a plan -------------------------------------------------------------------------

def _stub_traces(monkeypatch, forward: float = 1e12):
    """Traces of made-up size (the real ones take a minute): FLOPs linear in the batch at ``forward`` per image."""
    from sail_core.plan import estimate, workloads
    from sail_core.plan.trace import Trace

    def line(static: float, per_item: float, items: int, flops_per_item: float, **kw) -> Trace:
        return Trace(int(flops_per_item * items), int(static + per_item * items),
                     {"Parameter": int(static), "Activation": int(per_item * items)}, **kw)

    monkeypatch.setattr(workloads, "trace_sampling", lambda model, sampler, images: line(
        2 * GIB, 0.5 * GIB, images, forward * (2 if sampler.guidance_scale != 1 else 1)))
    monkeypatch.setattr(workloads, "trace_ranking", lambda model, rows: line(4 * GIB, 0.05 * GIB, rows, 2 * forward))
    monkeypatch.setattr(workloads, "trace_dpo", lambda model, train, micro, accumulation: line(
        18 * GIB, 1 * GIB, micro, 10 * forward))
    monkeypatch.setattr(workloads, "trace_decode",
                        lambda model, images: line(0.1 * GIB, 0.1 * GIB, images, 3 * forward))
    monkeypatch.setattr(workloads, "frozen_parts_bytes", lambda model: int(0.5 * GIB))
    monkeypatch.setattr(workloads, "unet_parameters", lambda model: 123)
    for cached in (estimate._sampling, estimate._ranking, estimate._dpo, estimate._decode, estimate._frozen_bytes,
                   estimate._unet_params):
        cached.cache_clear()
    yield
    for cached in (estimate._sampling, estimate._ranking, estimate._dpo, estimate._decode, estimate._frozen_bytes,
                   estimate._unet_params):
        cached.cache_clear()


@pytest.fixture
def stub_traces(monkeypatch):
    yield from _stub_traces(monkeypatch)


def test_gpu_hours_are_passes_times_flops_over_peak_times_mfu(stub_traces):
    config = load_config("sd15", {"prompts.per_round": [640], "rounds": 1, "generate.n_candidates": 4,
                                  "reward.k_draws": 3, "round_train.effective_batch_pairs": 64,
                                  "seed_data.seed_size": 1000})
    h100, mfu, forward = gpu("H100"), 0.3, 1e12
    plan = build_plan(config, h100, 2, mfu=mfu, eval_prompts=50)
    generate, rank, dpo, evaluate = plan.rounds[0].stages
    rate = h100.peak_bf16_tflops * 1e12 * mfu
    assert generate.unet_forwards == 640 * 4 * 50 * 2  # prompts × N × DDPM steps × cfg
    assert generate.gpu_seconds == pytest.approx(generate.unet_forwards * forward / rate)
    assert rank.unet_forwards == 640 * 4 * 3 * 2      # candidates × K × (policy + reference)
    assert rank.gpu_seconds == pytest.approx(rank.unet_forwards * forward / rate)
    pairs = math.ceil(640 / 0.25 / 64) * 64           # a pass over prompts / α pairs, in whole steps
    assert dpo.gpu_seconds == pytest.approx(pairs * 10 * forward / rate)
    assert evaluate.gpu_seconds == pytest.approx((50 * 50 * 2 + 50 * 3) * forward / rate)
    assert plan.rounds[0].gpu_seconds == pytest.approx(sum(s.gpu_seconds for s in (generate, rank, dpo, evaluate)))
    assert generate.wall_seconds == pytest.approx(generate.gpu_seconds / 2)  # three shards of 256 prompts, 2 GPUs


def test_memory_fit_uses_the_margin_and_names_the_largest_batch(stub_traces):
    from sail_core.preflight import memory_problems

    config = load_config("sd15", {"round_train.micro_batch_pairs": 8, "seed_train.micro_batch_pairs": 8})
    card = gpu("RTX 4090")  # 24 GiB: DPO at 8 pairs is (18 + 8 × 1 + 0.5) × 1.1 + 1 GiB = 30.2 GiB
    problems = memory_problems(config, card)
    largest = int((MARGIN.usable(card.memory_bytes) - 18.5 * GIB) // GIB)
    assert problems == [
        f"seed_train.micro_batch_pairs=8: seed DPO (iteration 0) needs an estimated 30.2 GiB per GPU, and the "
        f"RTX 4090 has 24.0 GiB; the largest that fits is {largest}: set seed_train.micro_batch_pairs={largest}",
        f"round_train.micro_batch_pairs=8: DPO needs an estimated 30.2 GiB per GPU, and the RTX 4090 has 24.0 GiB; "
        f"the largest that fits is {largest}: set round_train.micro_batch_pairs={largest}",
    ]
    assert memory_problems(config, gpu("H100")) == []
    assert memory_problems(config.model_copy(update={"runtime": config.runtime.model_copy(
        update={"device": "cpu"})})) == []  # a CPU run: skipped


# --- the command's errors -----------------------------------------------------------------------------

def test_an_unknown_gpu_lists_the_known_ones():
    line = one_line_error(sail("plan", "--preset", "sd15", "--gpu", "V100"))
    assert line.startswith("sail plan: error: parameter '--gpu': unknown GPU 'V100'; known: ")
    assert all(g.name in line for g in GPUS)


@pytest.mark.parametrize("args,message", [
    (["--gpus", "0"], "parameter '--gpus': must be at least 1 (got 0)"),
    (["--mfu", "-0.3"], "parameter '--mfu': must be a fraction in (0, 1], e.g. 0.35 (got -0.3)"),
    (["--mfu", "35"], "parameter '--mfu': must be a fraction in (0, 1], e.g. 0.35 (got 35.0)"),
])
def test_bad_counts_and_mfu_are_one_line_errors(args, message, capsys):
    from sail_cli.main import main

    assert main(["plan", "--preset", "sd15", "--gpu", "H100", *args]) == 1  # in process: the same handler
    assert capsys.readouterr().err == f"sail plan: error: {message}\n"


def test_gpu_names_match_loosely_and_a_device_is_found_by_its_cuda_name():
    from sail_core.plan.gpus import detect

    assert gpu("h100").name == gpu("H100-80GB").name == "H100 80GB"
    assert gpu("rtx 4090").memory_gib < 24
    assert detect("NVIDIA H100 80GB HBM3", 85_000_000_000).peak_bf16_tflops == 989.0
    assert detect("NVIDIA H200", 150_000_000_000).name == "H200"
    assert detect("NVIDIA GeForce RTX 4090", 25_000_000_000).name == "RTX 4090"
    unknown = detect("Some Future GPU", 2**35)
    assert unknown.memory_gib == 32 and unknown.peak_bf16_tflops == 0


def test_the_gpu_check_puts_the_plans_prediction_beside_each_measurement(stub_traces):
    from bench.gpu_check import predictions_for, summary_table

    records = [
        {"op": "env", "op_status": "ok"},
        {"family": "sd15", "op": "sample", "variant": "eager", "impl": "sail", "images": 32, "steps": 10,
         "unet_batch": 64, "images_per_s": 30.0, "ms_per_step": 100.0, "peak_gib": 7.0, "tflops": 500.0,
         "peak_tflops": 989.0, "mfu": 0.5, "op_status": "ok"},
        {"family": "sd15", "op": "dpo", "variant": "eager", "impl": "sail", "micro_batch_pairs": 8, "accumulation": 2,
         "gradient_checkpointing": True, "pairs_per_s": 16.0, "seconds_per_step": 1.0, "peak_gib": 20.0,
         "tflops": 100.0, "peak_tflops": 989.0, "mfu": 0.1, "op_status": "ok"},
    ]
    predicted = predictions_for(records)
    assert sorted(predicted) == [1, 2]
    # the stub's sampling trace: 2 GiB of weights + 0.5 GiB per image, the reference UNet (2 GiB) beside it
    vae = 2 * 83_653_863
    assert predicted[1]["peak_gib"] == round((2 * GIB + 16 * GIB + 2 * GIB + vae) / GIB, 2)
    # throughput at the anchor's MFU: 989 TFLOP/s × 26.7% over 10 steps × 2 forwards of 1 TFLOP per image
    assert predicted[1]["images_per_s"] == pytest.approx(989e12 * (264.0 / 989) / (10 * 2 * 1e12), rel=1e-3)
    assert predicted[2]["pairs_per_s"] == pytest.approx(989e12 * (165.6 / 989) / (10 * 1e12), rel=1e-3)
    table = summary_table(records, predicted)
    assert f"| {predicted[1]['peak_gib']} | 13.2 img/s (27%) |" in table
