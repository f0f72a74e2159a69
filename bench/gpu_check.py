"""One GPU check of SAIL's three hot loops on the real SD1.5 and SDXL architectures (random weights).

    bench/gpu_check.sh             # on one NVIDIA GPU: at most 8 minutes; bench/results/ (and $OUT)
    bench/gpu_check.sh --dry-run   # tiny shapes on the CPU, the same code path (the test suite runs it)

For each family at its real resolution (SD1.5 512², SDXL 1024²) it builds UNets of the published
architecture with random weights (speed does not depend on their values) and measures, through the
project's own functions, each beside plain diffusers eager bf16 on the same shapes in the same run:

* ``sample``: ``sail_core.algorithm.sampler.sample_latents`` with the preset's sampler and cfg (steps
  reduced), one full batch of the preset's size; baseline: ``StableDiffusion(XL)Pipeline`` with the
  same UNet, scheduler, steps, cfg and batch, ``output_type="latent"``. Images/s and ms per step.
* ``rank``: ``sail_core.algorithm.reward.implicit_rewards`` (K = 10 draws, policy + reference, the preset's
  batch); baseline: the same forwards as a plain loop. Candidates/s.
* ``dpo``: ``DpoTrainer.optimizer_step`` with the preset's optimizer, mixed precision, gradient
  checkpointing and micro-batch (accumulation reduced); baseline: a plain autocast bf16 loop with the
  same optimizer, checkpointing, micro-batch and accumulation. Pairs/s.

``sample`` and ``rank`` run per variant of ``runtime.compile`` × ``runtime.channels_last`` (applied by
``sail_core.models.denoisers.prepare_for_inference``, as the stages load them); the baseline is eager.
Every record carries the peak GPU memory of its timed part (``torch.cuda.max_memory_allocated``,
everything resident then included), model FLOPs and MFU:

* F = GFLOP of one UNet forward of one image: 803.3 (SD1.5, 512²) and 6761.2 (SDXL, 1024²), the counts
  of the H100 anchor measurements (``torch.utils.flop_counter`` on these architectures; the run counts them again
  and reports both). Dry runs use their own count.
* sample: steps × 2 (cfg) × F per image; rank: K × 2 (policy + reference) × F per candidate;
  dpo: 2 latents × (3F policy forward + backward + 1F reference forward) = 8F per pair (model FLOPs;
  ``hw_tflops`` adds the checkpointing re-forward: 10F).
* MFU = achieved model TFLOP/s ÷ the GPU's dense bf16 peak (``--peak-tflops``; 989 for H100/H200).

Beside each measurement the summary puts what ``sail plan`` predicts for it (``plan_prediction``: the same
work traced on fake tensors on the CPU, and the throughput at the nearest field-note anchor's MFU), so the
first GPU run checks the plan too; ``--summarize FILE.jsonl`` adds them afterwards on any machine.

Records go out as JSON lines the moment each measurement ends (stdout, ``bench/results/*.jsonl`` and
``$OUT/gpu_check.jsonl`` when ``OUT`` is set); a Markdown summary table follows at the end. A
measurement that would not fit the time budget is skipped with a record saying so; one that fails
(e.g. out of memory) leaves an ``error`` record and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT_DIR = REPO / "bench" / "results"

STATED_FWD_GFLOP = {"sd15": 803.3, "sdxl": 6761.2}
"""GFLOP of one UNet forward of one image at the family's resolution (the H100 anchor's, measured with
``torch.utils.flop_counter`` on these architectures: SD1.5 at 64² latents, SDXL at 128²)."""

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "GH200": 989.0, "A100": 312.0}
"""Dense bf16 peak by GPU name (vendor datasheets), matched as a word of ``torch.cuda.get_device_name()``."""

VARIANTS = ("eager", "channels_last", "compile+channels_last", "compile")
"""``runtime`` settings measured for sampling and ranking, in the order they run (compiling costs most)."""


# --- the models -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Architecture:
    """Component configs of one family (diffusers ``from_config`` dicts) and its shapes."""

    family: str
    resolution: int
    unet: dict[str, Any]
    vae: dict[str, Any]
    scheduler: dict[str, Any]
    context: tuple[int, int]
    """(tokens, width) of the text conditioning."""
    pooled: int | None
    """Width of SDXL's pooled text embedding; None for SD1.5."""
    source: str


def _published_config(folder: Path) -> dict[str, Any]:
    return json.loads(folder.read_text())


def published_architecture(family: str) -> Architecture:
    """The published SD1.5 / SDXL-base-1.0 configs of UNet, VAE, noise schedule and text encoders, as
    shipped in ``sail_core/models/published/`` (sources: its ``SOURCES.md``)."""
    from sail_core.models.architectures import architecture

    arch = architecture(family)
    root = arch.published
    unet = _published_config(root / "unet" / "config.json")
    vae = _published_config(root / "vae" / "config.json")
    encoders = [_published_config(root / c.subfolder / "config.json") for c in arch.components
                if c.kind in ("text_encoder", "text_encoder_projection")]
    # the UNet's context is every text encoder's last hidden states side by side (SDXL: 768 + 1280 = 2048)
    context = (encoders[0]["max_position_embeddings"], sum(e["hidden_size"] for e in encoders))
    pooled = encoders[-1]["projection_dim"] if family == "sdxl" else None
    resolution = unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
    return Architecture(family, resolution, unet, vae, _published_config(root / "scheduler" / "scheduler_config.json"),
                        context, pooled, f"{arch.hub_id}@{arch.revision[:8]} (sail_core/models/published/{family})")


def dry_run_architecture(family: str) -> Architecture:
    """The published block layout, shrunk to run on a CPU in seconds: 16 px images, 8² latents, 8-16
    channels (the presets' bf16 is slow on CPUs: size is what keeps the dry run short)."""
    real = published_architecture(family)
    depth = len(real.unet.get("block_out_channels", (320, 640, 1280, 1280)))
    small = dict(block_out_channels=(8, 8, 16, 16)[:depth], layers_per_block=1, sample_size=8, norm_num_groups=8)
    if family == "sd15":
        unet = {**real.unet, **small, "cross_attention_dim": 32, "attention_head_dim": 4}
        context, pooled = (77, 32), None
    else:
        unet = {**real.unet, **small, "cross_attention_dim": 64, "attention_head_dim": (2, 4, 4),
                "transformer_layers_per_block": (1, 1, 2), "addition_time_embed_dim": 8,
                "projection_class_embeddings_input_dim": 6 * 8 + 32}
        context, pooled = (77, 64), 32
    vae = {**real.vae, "block_out_channels": (32, 64), "down_block_types": ("DownEncoderBlock2D",) * 2,
           "up_block_types": ("UpDecoderBlock2D",) * 2, "layers_per_block": 1, "sample_size": 16}
    return Architecture(family, 16, unet, vae, real.scheduler, context, pooled, f"{real.source}, shrunk for a dry run")


def build_unet(arch: Architecture, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A UNet of ``arch`` with random weights, created on ``device`` (no CPU round trip)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(arch.unet)
    return unet.to(device=device, dtype=dtype)


def build_bundle(arch: Architecture, model_config, device: torch.device):
    """The project's ``ModelBundle`` for ``arch``: its noise schedule and VAE codec. Prompts are not
    encoded (conditionings are random tensors of the text encoders' output shapes), so it holds no
    prompt encoder."""
    from diffusers import AutoencoderKL, DDPMScheduler

    from sail_core.models.bundle import ModelBundle
    from sail_core.models.codec import VaeCodec

    with torch.device(device):
        vae = AutoencoderKL.from_config(arch.vae)
    codec = VaeCodec(vae.to(device=device, dtype=torch.bfloat16).eval().requires_grad_(False))
    return ModelBundle(model_config, DDPMScheduler.from_config(arch.scheduler), codec, None, device)  # type: ignore[arg-type]


def random_conditioning(arch: Architecture, n: int, seed: int = 0):
    from sail_core.models.conditioning import Conditioning

    g = torch.Generator().manual_seed(seed)
    tokens, width = arch.context
    pooled = torch.randn(n, arch.pooled, generator=g) if arch.pooled else None
    return Conditioning(torch.randn(n, tokens, width, generator=g), pooled)


def count_forward_flops(unet, bundle, arch: Architecture) -> float:
    """FLOPs of one forward of one image (``torch.utils.flop_counter``: matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, *bundle.latent_shape, device=bundle.device, dtype=unet.dtype)
    t = torch.tensor([500], device=bundle.device)
    kwargs = bundle.unet_kwargs(random_conditioning(arch, 1), unet.dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        unet(x, t, **kwargs)
    return float(counter.get_total_flops())


# --- measuring ------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


@dataclass
class Timing:
    seconds: list[float]
    warmup_s: float
    peak_gib: float | None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def measure(fn: Callable[[], object], device: torch.device, repeats: int,
            warmup: Callable[[], object] | None = None) -> Timing:
    """Warm up (compiling, allocating), then time ``repeats`` calls; peak memory of the timed calls."""
    _sync(device)
    start = time.perf_counter()
    (warmup or fn)()
    _sync(device)
    warmup_s = time.perf_counter() - start
    _reset_peak(device)
    seconds = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return Timing(seconds, warmup_s, _peak_gib(device))


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --- output ---------------------------------------------------------------------------------------

class Results:
    """JSON lines, written and flushed the moment each record exists (to stdout and every file)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.records: list[dict[str, Any]] = []
        self._files = []
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files.append(path.open("x", buffering=1))  # never overwrite an earlier run's results

    def emit(self, **record: Any) -> dict[str, Any]:
        line = json.dumps(record)
        self.records.append(record)
        print(line, flush=True)
        for f in self._files:
            f.write(line + "\n")
            f.flush()
        return record

    def close(self) -> None:
        for f in self._files:
            f.close()


def _r(x: float | None, digits: int = 4) -> float | None:
    """``x`` to ``digits`` significant digits (tiny dry-run figures keep their precision too)."""
    return None if x is None else float(f"{x:.{digits}g}")


@dataclass
class Context:
    device: torch.device
    gpu: str
    peak_tflops: float | None
    results: Results
    deadline: float
    strict: bool
    dry_run: bool
    skipped: list[str] = field(default_factory=list)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def throughput_fields(self, per_s: float, flops_per_item: float, hw_flops_per_item: float | None = None
                          ) -> dict[str, Any]:
        tflops = per_s * flops_per_item / 1e12
        out = {"tflops": _r(tflops, 4), "peak_tflops": self.peak_tflops,
               "mfu": None if not self.peak_tflops else _r(tflops / self.peak_tflops, 5)}
        if hw_flops_per_item is not None:
            out["hw_tflops"] = _r(per_s * hw_flops_per_item / 1e12, 4)
        return out

    @contextlib.contextmanager
    def attempt(self, what: dict[str, Any], needs_s: float) -> Iterator[bool]:
        """Run a measurement if ``needs_s`` seconds are left; record a skip or an error otherwise."""
        if self.remaining() < needs_s:
            self.results.emit(**what, op_status="skipped",
                              reason=f"time budget: {self.remaining():.0f} s left, needs about {needs_s:.0f} s")
            yield False
            return
        try:
            yield True
        except Exception as exc:
            if self.strict:
                raise
            self.results.emit(**what, op_status="error", error=f"{type(exc).__name__}: {exc}"[:2000],
                              where=traceback.format_exc(limit=-3)[-1500:])
            _free(self.device)


# --- the plan of one family -----------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """How much of each loop one family runs (the preset's settings, with steps and batches reduced)."""

    sample_steps: int
    sample_images: int
    sample_repeats: int
    rank_candidates: int
    rank_repeats: int
    dpo_accumulation: int
    dpo_steps: int
    estimate_s: dict[str, float]
    """Seconds a measurement needs at least (H100 anchors; compiling: a guess), for the time budget:
    optimistic on purpose, since a measurement cut by the hard time limit loses nothing written before."""


def gpu_plan(family: str, preset) -> Plan:
    k, batch = preset.reward.k_draws, preset.reward.batch_size
    candidates = math.lcm(k, batch) // k  # every ranking batch full: one compiled shape
    if family == "sd15":
        return Plan(10, preset.generate.sampler.batch_size, 2, candidates, 1, 2, 2,
                    {"sample": 8, "rank": 8, "dpo": 12, "compile": 60})
    return Plan(5, preset.generate.sampler.batch_size, 2, candidates, 1, 2, 2,
                {"sample": 12, "rank": 12, "dpo": 20, "compile": 90})


def dry_plan(family: str, preset) -> Plan:
    return Plan(2, 2, 1, 2, 1, 2, 1, {"sample": 1, "rank": 1, "dpo": 1, "compile": 1})


# --- the three loops ------------------------------------------------------------------------------

def _sampler(preset, plan: Plan, steps: int | None = None):
    s = preset.generate.sampler
    return s.model_copy(update={"steps": steps or plan.sample_steps, "batch_size": plan.sample_images})


def _forwards_per_step(sampler) -> int:
    return 2 if sampler.guidance_scale != 1.0 else 1


def run_sample(ctx: Context, arch: Architecture, bundle, policy, preset, plan: Plan, fwd_flops: float,
               variant: str, baseline: dict | None) -> dict | None:
    from sail_core.algorithm.sampler import sample_latents
    from sail_core.models.conditioning import Conditioning
    from sail_core.models.denoisers import TwoUnets

    sampler = _sampler(preset, plan)
    n = plan.sample_images
    cond = random_conditioning(arch, n, seed=1)
    uncond = Conditioning(torch.zeros_like(cond.prompt_embeds[:1]),
                          None if cond.pooled is None else torch.zeros_like(cond.pooled[:1]))
    forwards = _forwards_per_step(sampler)
    what = dict(family=arch.family, op="sample", variant=variant, images=n, steps=sampler.steps,
                sampler=sampler.kind, guidance_scale=sampler.guidance_scale, unet_batch=n * forwards)
    needs = plan.estimate_s["sample"] + (plan.estimate_s["compile"] if "compile" in variant else 0)
    flops_per_image = sampler.steps * forwards * fwd_flops

    def record(impl: str, timing: Timing, base: dict | None) -> dict:
        per_s = n / timing.median
        fields = dict(what, impl=impl, seconds=_r(timing.median, 4), repeats=len(timing.seconds),
                      warmup_s=_r(timing.warmup_s), images_per_s=_r(per_s, 4),
                      ms_per_step=_r(timing.median / sampler.steps * 1e3), peak_gib=timing.peak_gib,
                      fwd_gflop=_r(fwd_flops / 1e9, 5), flops_formula="steps x forwards_per_step (2 with cfg) x F",
                      **ctx.throughput_fields(per_s, flops_per_image))
        if base is not None:
            fields.update(baseline_images_per_s=base["images_per_s"],
                          ratio_vs_baseline=_r(per_s / base["images_per_s"], 4))
        return ctx.results.emit(**fields, op_status="ok")

    if baseline is None:
        with ctx.attempt(dict(what, impl="diffusers"), needs) as go:
            if go:
                pipe = _diffusers_pipeline(arch, bundle, policy, sampler)
                pipe_kwargs = _pipeline_kwargs(arch, cond, uncond, sampler, bundle)

                def run_pipe(steps: int = sampler.steps):
                    return pipe(**pipe_kwargs, num_inference_steps=steps,
                                generator=torch.Generator(ctx.device).manual_seed(0)).images

                baseline = record("diffusers", measure(run_pipe, ctx.device, plan.sample_repeats,
                                                       warmup=lambda: run_pipe(1)), None)
                del pipe
    with ctx.attempt(dict(what, impl="sail"), needs) as go:
        if go:
            predict = TwoUnets(policy, None).policy
            seeds = list(range(n))
            warm = _sampler(preset, plan, steps=1)
            timing = measure(lambda: sample_latents(predict, bundle, cond, uncond, seeds, sampler, policy.dtype),
                             ctx.device, plan.sample_repeats,
                             warmup=lambda: sample_latents(predict, bundle, cond, uncond, seeds, warm, policy.dtype))
            record("sail", timing, baseline)
    return baseline


def _diffusers_pipeline(arch: Architecture, bundle, unet, sampler):
    """Plain diffusers: the family's pipeline around the same UNet and VAE, with the sampler's scheduler."""
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = (DDIMScheduler if sampler.kind == "ddim" else DDPMScheduler).from_config(arch.scheduler)
    vae = bundle.codec.vae
    if arch.family == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                         tokenizer_2=None, unet=unet, scheduler=scheduler)
    else:
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=None, tokenizer=None, unet=unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pipeline_kwargs(arch: Architecture, cond, uncond, sampler, bundle) -> dict:
    dtype, device, n = torch.bfloat16, bundle.device, len(cond)
    kwargs = dict(prompt_embeds=cond.prompt_embeds.to(device, dtype),
                  negative_prompt_embeds=uncond.prompt_embeds.expand(n, -1, -1).to(device, dtype),
                  guidance_scale=sampler.guidance_scale, height=arch.resolution, width=arch.resolution,
                  output_type="latent")
    if arch.pooled:
        kwargs.update(pooled_prompt_embeds=cond.pooled.to(device, dtype),
                      negative_pooled_prompt_embeds=uncond.pooled.expand(n, -1).to(device, dtype))
    if sampler.kind == "ddim":
        kwargs["eta"] = sampler.eta
    return kwargs


def run_rank(ctx: Context, arch: Architecture, bundle, policy, reference, preset, plan: Plan, fwd_flops: float,
             variant: str, baseline: dict | None) -> dict | None:
    from sail_core.algorithm.reward import implicit_rewards
    from sail_core.models.denoisers import TwoUnets

    reward = preset.reward
    k, batch, n = reward.k_draws, reward.batch_size, plan.rank_candidates
    per_prompt = preset.generate.n_candidates
    latents = torch.randn(n, *bundle.latent_shape, generator=torch.Generator().manual_seed(2))
    groups = [m // per_prompt for m in range(n)]
    cond = random_conditioning(arch, groups[-1] + 1, seed=3)
    what = dict(family=arch.family, op="rank", variant=variant, candidates=n, k_draws=k, batch=batch,
                forwards=2 * n * k)
    needs = plan.estimate_s["rank"] + (plan.estimate_s["compile"] if "compile" in variant else 0)
    flops_per_candidate = k * 2 * fwd_flops

    def record(impl: str, timing: Timing, base: dict | None) -> dict:
        per_s = n / timing.median
        fields = dict(what, impl=impl, seconds=_r(timing.median, 4), repeats=len(timing.seconds),
                      warmup_s=_r(timing.warmup_s), candidates_per_s=_r(per_s, 4), peak_gib=timing.peak_gib,
                      fwd_gflop=_r(fwd_flops / 1e9, 5), flops_formula="K x 2 (policy + reference) x F",
                      **ctx.throughput_fields(per_s, flops_per_candidate))
        if base is not None:
            fields.update(baseline_candidates_per_s=base["candidates_per_s"],
                          ratio_vs_baseline=_r(per_s / base["candidates_per_s"], 4))
        return ctx.results.emit(**fields, op_status="ok")

    if baseline is None:
        with ctx.attempt(dict(what, impl="diffusers"), needs) as go:
            if go:
                device, dtype = ctx.device, policy.dtype
                x0 = latents.to(device, dtype).repeat_interleave(k, dim=0)
                kwargs = bundle.unet_kwargs(cond.select([groups[m] for m in range(n) for _ in range(k)]), dtype)

                @torch.no_grad()
                def plain(items: int = n * k):
                    g = torch.Generator(device).manual_seed(0)
                    for start in range(0, items, batch):
                        rows = slice(start, start + batch)
                        x = x0[rows]
                        noise = torch.randn(x.shape, generator=g, device=device, dtype=dtype)
                        t = torch.randint(0, 1000, (len(x),), generator=g, device=device)
                        noisy = bundle.noise_scheduler.add_noise(x, noise, t)
                        part = {"encoder_hidden_states": kwargs["encoder_hidden_states"][rows]}
                        if "added_cond_kwargs" in kwargs:
                            part["added_cond_kwargs"] = {key: v[rows] for key, v in kwargs["added_cond_kwargs"].items()}
                        for unet in (policy, reference):
                            (unet(noisy, t, **part).sample.float() - noise.float()).pow(2).mean(dim=(1, 2, 3))

                baseline = record("diffusers", measure(plain, device, plan.rank_repeats,
                                                       warmup=lambda: plain(min(batch, n * k))), None)
    with ctx.attempt(dict(what, impl="sail"), needs) as go:
        if go:
            denoisers = TwoUnets(policy, reference)
            prompt_ids = [f"prompt-{g}" for g in range(groups[-1] + 1)]

            @torch.no_grad()
            def warm():  # one batch through each model, as implicit_rewards calls them: compiles that shape
                rows = min(batch, n * k)
                x = torch.randn(rows, *bundle.latent_shape, device=ctx.device)
                t = torch.randint(0, 1000, (rows,)).to(ctx.device)
                kwargs = bundle.unet_kwargs(cond.select([0] * rows), denoisers.dtype)
                denoisers.policy(x, t, **kwargs)
                denoisers.reference(x, t, **kwargs)

            timing = measure(lambda: implicit_rewards(denoisers, bundle, latents, cond, groups, prompt_ids, reward),
                             ctx.device, plan.rank_repeats, warmup=warm)
            record("sail", timing, baseline)
    return baseline


class InMemoryPairs:
    """What ``DpoTrainer`` reads of a ``PairDataset``, held in memory: random latents and conditionings
    (the project's table reads them from safetensors shards; reading is not what is measured here)."""

    def __init__(self, arch: Architecture, latent_shape: tuple[int, ...], n: int) -> None:
        g = torch.Generator().manual_seed(4)
        self.winners = torch.randn(n, *latent_shape, generator=g)
        self.losers = torch.randn(n, *latent_shape, generator=g)
        self.cond = random_conditioning(arch, n, seed=5)

    def __len__(self) -> int:
        return len(self.winners)

    def batch(self, indices):
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return self.winners[index], self.losers[index], self.cond.select(index)


def run_dpo(ctx: Context, arch: Architecture, bundle, preset, plan: Plan, fwd_flops: float) -> None:
    from sail_core.config import TrainConfig
    from sail_core.models.bundle import torch_dtype
    from sail_core.models.denoisers import TwoUnets
    from sail_core.training.trainer import DpoTrainer

    preset_train = preset.round_train
    micro = preset_train.micro_batch_pairs
    pairs_per_step = micro * plan.dpo_accumulation
    train = TrainConfig.model_validate({
        **preset_train.model_dump(), "effective_batch_pairs": pairs_per_step, "max_steps": 1 + plan.dpo_steps,
        "warmup_steps": 0, "checkpoint_every": 10**6})
    what = dict(family=arch.family, op="dpo", variant="eager", optimizer=train.optimizer,
                mixed_precision=train.mixed_precision, gradient_checkpointing=train.gradient_checkpointing,
                micro_batch_pairs=micro, accumulation=plan.dpo_accumulation, pairs_per_step=pairs_per_step,
                reference_dtype=preset.model.reference_dtype)
    ckpt = train.gradient_checkpointing
    model_flops, hw_flops = 2 * 4 * fwd_flops, 2 * (5 if ckpt else 4) * fwd_flops

    def record(impl: str, timing: Timing, base: dict | None) -> dict:
        per_s = pairs_per_step / timing.median
        fields = dict(what, impl=impl, seconds_per_step=_r(timing.median, 4), steps=len(timing.seconds),
                      warmup_s=_r(timing.warmup_s), pairs_per_s=_r(per_s, 4), peak_gib=timing.peak_gib,
                      fwd_gflop=_r(fwd_flops / 1e9, 5),
                      flops_formula="2 latents x (3F policy fwd+bwd + 1F reference fwd) = 8F per pair; "
                                    "hw_tflops adds the checkpointing re-forward (10F)",
                      **ctx.throughput_fields(per_s, model_flops, hw_flops))
        if base is not None:
            fields.update(baseline_pairs_per_s=base["pairs_per_s"],
                          ratio_vs_baseline=_r(per_s / base["pairs_per_s"], 4))
        return ctx.results.emit(**fields, op_status="ok")

    policy = build_unet(arch, ctx.device, torch.float32, seed=0).train()
    reference = build_unet(arch, ctx.device, torch_dtype(preset.model.reference_dtype), seed=1)
    reference.eval().requires_grad_(False)
    dataset = InMemoryPairs(arch, bundle.latent_shape, pairs_per_step * (1 + plan.dpo_steps))
    baseline = None
    with ctx.attempt(dict(what, impl="diffusers"), plan.estimate_s["dpo"]) as go:
        if go:
            baseline = record("diffusers", _plain_dpo(ctx, bundle, policy, reference, dataset, train, plan), None)
    policy.zero_grad(set_to_none=True)
    policy.disable_gradient_checkpointing()
    _free(ctx.device)
    with ctx.attempt(dict(what, impl="sail"), plan.estimate_s["dpo"]) as go:
        if go:
            with tempfile.TemporaryDirectory() as steps_dir:  # the trainer's checkpoint folder (never written)
                trainer = DpoTrainer(bundle, TwoUnets(policy, reference), dataset, train, steps_dir)
                trainer.policy_module.train()
                step = iter(range(1 + plan.dpo_steps))
                timing = measure(lambda: trainer.optimizer_step(next(step)), ctx.device, plan.dpo_steps)
                record("sail", timing, baseline)
                del trainer
    del policy, reference, dataset
    _free(ctx.device)


def _plain_dpo(ctx: Context, bundle, policy, reference, dataset: InMemoryPairs, train, plan: Plan) -> Timing:
    """Diffusion-DPO the way a plain diffusers training script writes it: autocast bf16, the data on
    the GPU, the same optimizer, checkpointing, micro-batch, accumulation and gradient clipping."""
    import torch.nn.functional as F

    from sail_core.training.optim import build_optimizer  # the preset's optimizer, built as the trainer builds it

    device, micro, acc = ctx.device, train.micro_batch_pairs, plan.dpo_accumulation
    if train.gradient_checkpointing:
        policy.enable_gradient_checkpointing()
    optimizer = build_optimizer([p for p in policy.parameters() if p.requires_grad], train)
    winners, losers = dataset.winners.to(device), dataset.losers.to(device)
    kwargs = bundle.unet_kwargs(dataset.cond, torch.float32)
    sched = bundle.noise_scheduler
    g = torch.Generator(device).manual_seed(0)
    amp = dict(device_type=device.type, dtype=torch.bfloat16, enabled=train.mixed_precision == "bf16")
    position = [0]

    def step():
        for _ in range(acc):
            rows = slice(position[0], position[0] + micro)
            position[0] = (position[0] + micro) % len(winners)
            x0 = torch.cat([winners[rows], losers[rows]])
            noise = torch.randn(winners[rows].shape, generator=g, device=device).repeat(2, 1, 1, 1)
            t = torch.randint(0, 1000, (micro,), generator=g, device=device).repeat(2)
            noisy = sched.add_noise(x0, noise, t)
            part = {"encoder_hidden_states": kwargs["encoder_hidden_states"][rows].repeat(2, 1, 1)}
            if "added_cond_kwargs" in kwargs:
                part["added_cond_kwargs"] = {k: v[rows].repeat(2, 1) for k, v in kwargs["added_cond_kwargs"].items()}
            with torch.autocast(**amp):
                pred = policy(noisy, t, **part).sample
                with torch.no_grad():
                    ref = reference(noisy.to(reference.dtype), t,
                                    **_to(part, reference.dtype)).sample
            mse = (pred.float() - noise).pow(2).mean(dim=(1, 2, 3))
            ref_mse = (ref.float() - noise).pow(2).mean(dim=(1, 2, 3))
            (mw, ml), (rw, rl) = mse.chunk(2), ref_mse.chunk(2)
            loss = -F.logsigmoid(-0.5 * train.beta * ((mw - ml) - (rw - rl))).mean()
            (loss / acc).backward()
        if train.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), train.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return measure(step, device, plan.dpo_steps)  # the optimizer's state goes with this frame


def _to(kwargs: dict, dtype: torch.dtype) -> dict:
    return {k: (_to(v, dtype) if isinstance(v, dict) else v.to(dtype)) for k, v in kwargs.items()}


# --- the run --------------------------------------------------------------------------------------

def inference_unets(ctx: Context, arch: Architecture, preset, variant: str):
    """Fresh policy and reference UNets in the preset's inference dtype, prepared as the stages
    prepare them for this variant's ``runtime``."""
    from sail_core.config import RuntimeConfig
    from sail_core.models.bundle import torch_dtype
    from sail_core.models.denoisers import prepare_for_inference

    runtime = RuntimeConfig(compile="compile" in variant, channels_last="channels_last" in variant)
    dtype = torch_dtype(preset.model.frozen_dtype)
    return tuple(prepare_for_inference(build_unet(arch, ctx.device, dtype, seed).eval().requires_grad_(False), runtime)
                 for seed in (0, 1))


@dataclass
class FamilyRun:
    arch: Architecture
    preset: Any
    plan: Plan
    bundle: Any
    fwd_flops: float
    baselines: dict[str, dict | None] = field(default_factory=dict)


def start_family(ctx: Context, family: str) -> FamilyRun:
    from sail_core.config import load_config

    arch = dry_run_architecture(family) if ctx.dry_run else published_architecture(family)
    preset = load_config(family)
    model = preset.model.model_copy(update={"source": "random", "resolution": arch.resolution})
    bundle = build_bundle(arch, model, ctx.device)
    plan = (dry_plan if ctx.dry_run else gpu_plan)(family, preset)
    policy, _ = inference_unets(ctx, arch, preset, "eager")
    counted = count_forward_flops(policy, bundle, arch)
    stated = None if ctx.dry_run else STATED_FWD_GFLOP[family] * 1e9
    params = sum(p.numel() for p in policy.parameters())
    ctx.results.emit(family=family, op="model", op_status="ok", source=arch.source, resolution=arch.resolution,
                     latent_shape=list(bundle.latent_shape), unet_params_M=_r(params / 1e6, 5),
                     fwd_gflop_counted=_r(counted / 1e9, 5), fwd_gflop_stated=None if stated is None else stated / 1e9,
                     fwd_gflop_used=_r((stated or counted) / 1e9, 5),
                     fwd_gflop_source="H100 anchor (stated)" if stated else "counted in this run (flop_counter)")
    del policy
    _free(ctx.device)
    return FamilyRun(arch, preset, plan, bundle, stated or counted)


def run_inference_variant(ctx: Context, run: FamilyRun, variant: str) -> None:
    policy, reference = inference_unets(ctx, run.arch, run.preset, variant)
    run.baselines["sample"] = run_sample(ctx, run.arch, run.bundle, policy, run.preset, run.plan, run.fwd_flops,
                                         variant, run.baselines.get("sample"))
    run.baselines["rank"] = run_rank(ctx, run.arch, run.bundle, policy, reference, run.preset, run.plan,
                                     run.fwd_flops, variant, run.baselines.get("rank"))
    del policy, reference
    _free(ctx.device)
    if "compile" in variant:
        torch._dynamo.reset()  # the next variant compiles its own graphs, and their memory goes


def detect_gpu(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def peak_for(gpu: str) -> float | None:
    words = set(re.split(r"[\s\-_]+", gpu.upper()))
    return next((peak for name, peak in PEAK_BF16_TFLOPS.items() if name in words), None)


# --- the plan's prediction beside each measurement ----------------------------------------------------

def plan_prediction(record: dict[str, Any]) -> dict[str, Any] | None:
    """What ``sail plan`` predicts for one measurement (``sail_core.plan``: the same work traced on fake tensors
    on the CPU, at the same shapes, with what the measurement holds resident): peak GiB (the traced peak, no
    margin: ``max_memory_allocated`` leaves the allocator's slack out too) and throughput at the MFU of the
    nearest field-note anchor. None for what it does not cover (dry runs' shrunk shapes, skips, errors)."""
    from sail_core.config import load_config
    from sail_core.models.architectures import architecture
    from sail_core.plan import estimate, workloads
    from sail_core.plan.anchors import mfu_anchor

    if record.get("op_status") != "ok" or record.get("op") not in ("sample", "rank", "dpo") or record.get("dry_run"):
        return None
    family = record["family"]
    preset = load_config(family)
    model = preset.model.model_copy(update={"resolution": published_architecture(family).resolution})
    mj = model.model_dump_json()
    vae_parameters = architecture(family).build("vae").parameters()
    vae = workloads.DTYPE_BYTES[model.frozen_dtype] * sum(p.numel() for p in vae_parameters)
    peak_tflops = record.get("peak_tflops") or 989.0
    if record["op"] == "sample":
        images = record["images"]
        sampler = preset.generate.sampler.model_copy(update={"batch_size": images, "steps": record["steps"]})
        t = estimate._sampling(mj, sampler.model_dump_json(), images)
        resident = t.peak_bytes + t.at_peak.get("Parameter", 0) + vae  # the reference UNet waits beside it
        anchor = mfu_anchor(family, "forward", record["unet_batch"])
        per_item = record["steps"] * t.flops / images
        unit = "images_per_s"
    elif record["op"] == "rank":
        t = estimate._ranking(mj, record["batch"])
        resident = t.peak_bytes + vae
        anchor = mfu_anchor(family, "forward", record["batch"])
        per_item = record["k_draws"] * t.flops / record["batch"]
        unit = "candidates_per_s"
    else:
        train = preset.round_train.model_copy(update={"micro_batch_pairs": record["micro_batch_pairs"]})
        t = estimate._dpo(mj, estimate._train_json(train), record["micro_batch_pairs"], min(record["accumulation"], 2))
        resident = t.peak_bytes + vae
        anchor = mfu_anchor(family, "dpo", record["micro_batch_pairs"], record["gradient_checkpointing"])
        per_item = t.flops / record["micro_batch_pairs"]
        unit = "pairs_per_s"
    return {"peak_gib": round(resident / 2**30, 2), unit: _r(peak_tflops * 1e12 * anchor.mfu / per_item, 4),
            "mfu": round(anchor.mfu, 4), "mfu_source": anchor.describe()}


def summary_table(records: list[dict[str, Any]], predictions: dict[int, dict[str, Any]] | None = None) -> str:
    """Markdown: one row per finished measurement (and per skip or error); with ``predictions`` (by record
    index, :func:`plan_prediction`) the plan's peak and throughput beside the measured ones."""
    predictions = predictions or {}
    lines = ["| family | op | impl | variant | throughput | ms/step | peak GiB | TFLOP/s | MFU | vs diffusers | "
             "plan: peak GiB | plan: throughput (MFU) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    units = {"sample": ("images_per_s", "img/s"), "rank": ("candidates_per_s", "cand/s"),
             "dpo": ("pairs_per_s", "pairs/s")}
    for i, r in enumerate(records):
        if r.get("op") not in units:
            continue
        if r.get("op_status") != "ok":
            lines.append(f"| {r['family']} | {r['op']} | {r.get('impl', '')} | {r.get('variant', '')} | "
                         f"{r['op_status']}: {r.get('reason') or r.get('error', '')} | | | | | | | |")
            continue
        key, unit = units[r["op"]]
        ms = r.get("ms_per_step") if r["op"] == "sample" else (
            None if r["op"] == "rank" else _r(r["seconds_per_step"] * 1e3))
        mfu = "" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        ratio = "" if r.get("ratio_vs_baseline") is None else f"{r['ratio_vs_baseline']:.2f}×"
        p = predictions.get(i)
        plan = (f"{p['peak_gib']} | {p[key]:.3g} {unit} ({100 * p['mfu']:.0f}%)" if p else " | ")
        lines.append(f"| {r['family']} | {r['op']} | {r['impl']} | {r['variant']} | {r[key]:.3g} {unit} | "
                     f"{'' if ms is None else f'{ms:.1f}'} | {'' if r['peak_gib'] is None else r['peak_gib']} | "
                     f"{r['tflops']:.3g} | {mfu} | {ratio} | {plan} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"))
    if device.type != "cuda" and not args.dry_run:
        print("gpu_check: no CUDA device; use --dry-run on a CPU", file=sys.stderr)
        return 2
    gpu = detect_gpu(device)
    if args.peak_tflops:
        peak, peak_source = args.peak_tflops, "--peak-tflops"
    elif args.dry_run:
        peak, peak_source = 1.0, "nominal 1 TFLOP/s (dry run: MFU only checks the arithmetic)"
    else:
        peak, peak_source = peak_for(gpu), "dense bf16 datasheet figure by GPU name"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    slug = "dry-run" if args.dry_run else re.sub(r"[^a-z0-9]+", "-", gpu.lower()).strip("-")
    out_dir = Path(args.out_dir)
    paths = [out_dir / f"gpu-check-{slug}-{stamp}.jsonl"]
    if os.environ.get("OUT") and not args.no_out:
        paths.append(Path(os.environ["OUT"]) / "gpu_check.jsonl")
    results = Results(paths)
    ctx = Context(device, gpu, peak, results, started + args.budget_s, strict=args.strict, dry_run=args.dry_run)
    import diffusers
    import transformers

    results.emit(op="env", op_status="ok", gpu=gpu, device=str(device), dry_run=args.dry_run, peak_tflops=peak,
                 peak_source=peak_source,
                 torch=torch.__version__, cuda=torch.version.cuda, diffusers=diffusers.__version__,
                 transformers=transformers.__version__, families=args.families, variants=args.variants,
                 budget_s=args.budget_s, started_utc=stamp)
    if peak is None:
        print(f"gpu_check: no dense bf16 peak known for {gpu!r}: MFU is left empty (pass --peak-tflops)",
              file=sys.stderr)
    runs: dict[str, FamilyRun] = {}
    # eager work of every family first, compiled variants after: what matters most lands first
    for family in args.families:
        with ctx.attempt(dict(family=family, op="model"), 10) as go:
            if go:
                runs[family] = start_family(ctx, family)
        if family not in runs:
            continue
        for variant in [v for v in args.variants if "compile" not in v]:
            run_inference_variant(ctx, runs[family], variant)
        with ctx.attempt(dict(family=family, op="dpo"), runs[family].plan.estimate_s["dpo"]) as go:
            if go:
                run_dpo(ctx, runs[family].arch, runs[family].bundle, runs[family].preset, runs[family].plan,
                        runs[family].fwd_flops)
    for variant in [v for v in args.variants if "compile" in v]:
        for family in args.families:
            if family in runs:
                run_inference_variant(ctx, runs[family], variant)
    predictions = _predict_if_time(ctx, results.records, args.dry_run)
    results.emit(op="done", op_status="ok", elapsed_s=_r(time.monotonic() - started))
    results.close()
    table = summary_table(results.records, predictions)
    from sail_core.io.atomic import write_bytes

    write_bytes(paths[0].with_suffix(".md"), table.encode())
    if len(paths) > 1:
        write_bytes(paths[1].with_suffix(".md"), table.encode(), overwrite=True)
    print(table, flush=True)
    failed = [r for r in results.records if r.get("op_status") == "error"]
    return 1 if failed and args.strict else 0


def predictions_for(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out = {}
    for i, r in enumerate(records):
        p = plan_prediction(r)
        if p is not None:
            out[i] = p
    return out


def _predict_if_time(ctx: Context, records: list[dict[str, Any]], dry_run: bool) -> dict[int, dict[str, Any]]:
    """The plan's predictions, traced on this machine's CPU (about a minute for both families) when the time
    budget leaves room; otherwise ``--summarize`` adds them afterwards on any machine."""
    if dry_run or ctx.remaining() < 120:
        if not dry_run:
            print("gpu_check: no time left for the plan's predictions: run `python -m bench.gpu_check --summarize "
                  "<results>.jsonl` on any machine to add them", file=sys.stderr)
        return {}
    try:
        return predictions_for(records)
    except Exception as exc:  # noqa: BLE001 - the measurements matter more than the predictions
        print(f"gpu_check: the plan's predictions failed ({type(exc).__name__}: {exc})", file=sys.stderr)
        return {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU (same code path)")
    parser.add_argument("--families", default="sd15,sdxl", type=lambda s: [f for f in s.split(",") if f])
    parser.add_argument("--variants", default=None, type=lambda s: [v for v in s.split(",") if v],
                        help=f"of {','.join(VARIANTS)} (default: all on a GPU; no compile in a dry run)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak (default: by GPU name)")
    parser.add_argument("--budget-s", type=float, default=430.0, help="stop starting measurements after this")
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT_DIR))
    parser.add_argument("--no-out", action="store_true", help="do not also write under $OUT")
    parser.add_argument("--device", default=None)
    parser.add_argument("--strict", action="store_true", help="stop at the first error (default in a dry run)")
    parser.add_argument("--summarize", type=Path, default=None, metavar="JSONL",
                        help="only print the summary table of a results file (and write it beside $OUT's)")
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = [v for v in VARIANTS if not (args.dry_run and "compile" in v)]
    # the diffusers baselines run beside the eager variant, on UNets no runtime option touched
    args.variants = ["eager"] + [v for v in VARIANTS if v in args.variants and v != "eager"]
    unknown = set(args.variants) - set(VARIANTS) or set(args.families) - {"sd15", "sdxl"}
    if unknown:
        parser.error(f"unknown families or variants: {sorted(unknown)}")
    args.strict = args.strict or args.dry_run
    return args


def summarize(path: Path) -> int:
    from sail_core.io.atomic import write_bytes

    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    dry_run = any(r.get("op") == "env" and r.get("dry_run") for r in records)
    table = summary_table(records, {} if dry_run else predictions_for(records))
    if os.environ.get("OUT"):
        write_bytes(Path(os.environ["OUT"]) / "gpu_check.md", table.encode(), overwrite=True)
    print(table, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return summarize(args.summarize) if args.summarize else run(args)


if __name__ == "__main__":
    sys.exit(main())
