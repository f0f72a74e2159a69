"""Throughput of SAIL's hot loops, each against the naive way, measured in the same run.

    python bench/stages.py --model tiny-sd15            # CPU-sized, random weights (any machine)
    python bench/stages.py --model sd15 --device cuda   # SD1.5-shaped UNet, random weights (GPU)
    python bench/stages.py --model sdxl --device cuda

Prints one JSON line per measurement:
* ``reward``: the implicit self-reward of N candidates × K draws under policy and reference; naive =
  one candidate, one draw, one model per forward (batch 1), ours = ``sail_core.algorithm.reward`` batched.
* ``sample``: N candidates of one prompt with classifier-free guidance; naive = one image per call
  (the way a diffusers pipeline is usually looped), ours = ``sail_core.algorithm.sampler`` batched.
* ``dpo_step``: one Diffusion-DPO micro-batch; naive = VAE-encode the pair's images every step (the
  reference implementation), ours = train on cached latents.
Weights are random: speed does not depend on their values.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from sail_core.algorithm.dpo_loss import dpo_loss
from sail_core.algorithm.noising import add_noise, per_sample_mse
from sail_core.algorithm.reward import implicit_rewards
from sail_core.algorithm.sampler import sample_latents
from sail_core.config import ModelConfig, RewardConfig, SamplerConfig
from sail_core.models.bundle import load_bundle, load_unet
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import TwoUnets
from sail_core.models.tiny import build_tiny_pipeline

SHAPES = {
    "sd15": dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8),
    "sdxl": dict(sample_size=128, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
                 attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816),
}


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def timed(fn, device: torch.device, repeats: int = 2) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


class _Bundle:
    """The parts of a ModelBundle these loops touch, for the real-shaped UNets (no text encoder needed)."""

    def __init__(self, family: str, device: torch.device, dtype: torch.dtype):
        self.config = ModelConfig(family=family, source="random", resolution=8 * SHAPES[family]["sample_size"])
        self.noise_scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        self.device = device
        side = SHAPES[family]["sample_size"]
        self.latent_shape = (4, side, side)
        self.num_train_timesteps = 1000
        self.width = SHAPES[family]["cross_attention_dim"] if family == "sdxl" else 768
        self.dtype = dtype

    def unet_kwargs(self, cond, dtype):
        n = len(cond)
        kwargs = {"encoder_hidden_states": cond.prompt_embeds.to(self.device, dtype)}
        if self.config.family == "sdxl":
            side = self.config.resolution
            kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled.to(self.device, dtype),
                                           "time_ids": torch.tensor([side, side, 0, 0, side, side],
                                                                    device=self.device, dtype=dtype).expand(n, 6)}
        return kwargs

    def sampler_scheduler(self, sampler):
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler.from_config(self.noise_scheduler.config)
        scheduler.set_timesteps(sampler.steps, device=self.device)
        return scheduler


def build(model: str, device: torch.device):
    from sail_core.models.conditioning import Conditioning

    if model == "tiny-sd15":
        folder = build_tiny_pipeline("sd15", tempfile.mkdtemp())
        config = ModelConfig(family="sd15", source=str(folder), resolution=32, local_files_only=True)
        bundle = load_bundle(config, device)
        policy, reference = (load_unet(config, UnetCheckpoint(), ".", device=device) for _ in range(2))
        cond = bundle.prompt_encoder.encode(["a red circle"])
        return bundle, policy, reference, cond, torch.float32, bundle.codec
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    bundle = _Bundle(model, device, dtype)
    policy = UNet2DConditionModel(**SHAPES[model]).to(device, dtype).eval()
    reference = UNet2DConditionModel(**SHAPES[model]).to(device, dtype).eval()
    length = 77
    cond = Conditioning(torch.randn(1, length, bundle.width),
                        torch.randn(1, 1280) if model == "sdxl" else None)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2)
    vae = vae.to(device, dtype)
    from sail_core.models.codec import VaeCodec

    return bundle, policy, reference, cond, dtype, VaeCodec(vae)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-sd15", choices=["tiny-sd15", "sd15", "sdxl"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    bundle, policy, reference, cond, dtype, codec = build(args.model, device)
    emit(model=args.model, device=str(device), torch=torch.__version__, dtype=str(dtype),
         gpu=torch.cuda.get_device_name() if device.type == "cuda" else None)
    n, k = args.candidates, args.draws
    latents = torch.randn(n, *bundle.latent_shape)
    denoisers = TwoUnets(policy, reference)

    def naive_reward():
        with torch.no_grad():
            for i in range(n):
                for _ in range(k):
                    t = torch.randint(0, 1000, (1,), device=device)
                    x = latents[i : i + 1].to(device)
                    noisy = add_noise(bundle.noise_scheduler, x, torch.randn_like(x), t)
                    kwargs = bundle.unet_kwargs(cond, dtype)
                    for unet in (policy, reference):
                        unet(noisy.to(dtype), t, **kwargs)

    def batched_reward():
        config = RewardConfig(k_draws=k, batch_size=args.batch)
        implicit_rewards(denoisers, bundle, latents, cond, [0] * n, ["p"], config)

    naive, ours = timed(naive_reward, device, 1), timed(batched_reward, device, 1)
    emit(op="reward", candidates=n, draws=k, naive_s=round(naive, 3), ours_s=round(ours, 3),
         candidates_per_s=round(n / ours, 2), speedup=round(naive / ours, 2))

    sampler = SamplerConfig(kind="ddim", steps=10, guidance_scale=5.0, batch_size=n)
    uncond = type(cond)(torch.zeros_like(cond.prompt_embeds),
                        None if cond.pooled is None else torch.zeros_like(cond.pooled))
    many = type(cond)(cond.prompt_embeds.expand(n, -1, -1), None if cond.pooled is None else cond.pooled.expand(n, -1))
    naive = timed(lambda: [sample_latents(policy_forward(policy), bundle, cond, uncond, [s], sampler, dtype)
                           for s in range(n)], device, 1)
    ours = timed(lambda: sample_latents(policy_forward(policy), bundle, many, uncond, list(range(n)), sampler, dtype),
                 device, 1)
    emit(op="sample", images=n, steps=10, naive_s=round(naive, 3), ours_s=round(ours, 3),
         images_per_s=round(n / ours, 2), speedup=round(naive / ours, 2))

    pairs = max(1, args.batch // 16)
    side = bundle.config.resolution
    images = torch.rand(2 * pairs, 3, side, side) * 2 - 1
    cached = codec.encode(images.to(device)).float()
    policy.train()
    optimizer = torch.optim.AdamW([p for p in policy.parameters()], lr=1e-8)
    kwargs = bundle.unet_kwargs(type(cond)(cond.prompt_embeds.expand(2 * pairs, -1, -1),
                                           None if cond.pooled is None else cond.pooled.expand(2 * pairs, -1)), dtype)

    def step(encode: bool):
        x0 = codec.encode(images.to(device)).float() if encode else cached
        t = torch.randint(0, 1000, (pairs,), device=device).repeat(2)
        noise = torch.randn_like(x0[:pairs]).repeat(2, 1, 1, 1)
        noisy = add_noise(bundle.noise_scheduler, x0, noise, t).to(dtype)
        mse = per_sample_mse(policy(noisy, t, **kwargs).sample, noise)
        with torch.no_grad():
            ref = per_sample_mse(reference(noisy, t, **kwargs).sample, noise)
        loss = dpo_loss(*mse.chunk(2), *ref.chunk(2), beta=5000.0).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    naive, ours = timed(lambda: step(True), device), timed(lambda: step(False), device)
    emit(op="dpo_step", pairs=pairs, naive_s=round(naive, 3), ours_s=round(ours, 3), pairs_per_s=round(pairs / ours, 2),
         speedup=round(naive / ours, 2))


def policy_forward(unet):
    def forward(sample, timesteps, **kwargs):
        return unet(sample, timesteps, **kwargs).sample

    return forward


if __name__ == "__main__":
    main()
