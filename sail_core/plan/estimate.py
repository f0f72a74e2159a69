"""Per stage of a round, and for the whole run: UNet passes, FLOPs, peak memory per GPU process, the
largest batch that fits, time and GPU-hours at a stated MFU.

FLOPs and memory come from traces (:mod:`.workloads`) of one batch at the configured settings; a stage's
totals multiply the traced batch by how many batches the stage runs. Memory per GPU process is the traced
peak plus what the stage's process also holds (the text encoders and VAE of ``ModelBundle``; under DDP,
the gradient buckets), times the allocator margin of :data:`MARGIN` (calibrated in
``bench/plan_calibration.py``). Time = FLOPs / (dense bf16 peak × MFU), or the time to read every UNet
weight once per call where that is longer (small batches are bandwidth-bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from sail_core.config import ModelConfig, SailConfig, SamplerConfig, TrainConfig
from sail_core.errors import InputError
from sail_core.plan import workloads
from sail_core.plan.anchors import mfu_anchor
from sail_core.plan.gpus import Gpu
from sail_core.plan.trace import Trace

GIB = 2**30


@dataclass(frozen=True)
class Margin:
    """What a traced peak leaves out, added on top: ``fraction`` of the estimate (allocator fragmentation:
    reserved beyond allocated) and ``fixed_gib`` (the CUDA context, cuBLAS/cuDNN workspaces)."""

    fraction: float = 0.10
    fixed_gib: float = 1.0

    def apply(self, estimate_bytes: float) -> float:
        return estimate_bytes * (1 + self.fraction) + self.fixed_gib * GIB

    def usable(self, memory_bytes: float) -> float:
        """The largest traced estimate that still fits ``memory_bytes``."""
        return (memory_bytes - self.fixed_gib * GIB) / (1 + self.fraction)


MARGIN = Margin()


@dataclass(frozen=True)
class Memory:
    """Peak bytes per GPU process as a line in the stage's batch: ``static + per_item × batch``."""

    static_bytes: float
    per_item_bytes: float
    batch: int
    extra_bytes: float = 0.0
    """Held beside the traced work: frozen text encoders and VAE, DDP buckets."""

    def at(self, batch: int) -> float:
        return self.static_bytes + self.extra_bytes + self.per_item_bytes * batch

    @property
    def estimate_bytes(self) -> float:
        return self.at(self.batch)

    def with_margin(self, batch: int | None = None, margin: Margin = MARGIN) -> float:
        return margin.apply(self.at(self.batch if batch is None else batch))

    def largest_fitting(self, memory_bytes: float, margin: Margin = MARGIN, cap: int = 4096) -> int:
        room = margin.usable(memory_bytes) - self.static_bytes - self.extra_bytes
        if room < self.per_item_bytes:
            return 0
        return min(cap, int(room // self.per_item_bytes)) if self.per_item_bytes > 0 else cap


@dataclass(frozen=True)
class Stage:
    name: str
    work: str
    """What the stage does, in the configured settings' terms."""
    unet_forwards: float
    """Image-forwards of a UNet (DPO: policy, reference and the checkpointing re-forward)."""
    flops: float
    batch_setting: str
    memory: Memory
    mfu: float
    mfu_source: str
    gpus: int
    """GPUs the stage can use at once."""
    seconds_compute: float
    """GPU-seconds at the MFU."""
    seconds_bandwidth: float
    """GPU-seconds to read every UNet weight once per UNet call (the floor at small batches)."""
    limit: str = ""
    """Why the stage cannot use every GPU (fewer shards, the DPO barrier), if so."""

    @property
    def gpu_seconds(self) -> float:
        return max(self.seconds_compute, self.seconds_bandwidth)

    @property
    def wall_seconds(self) -> float:
        return self.gpu_seconds / self.gpus

    @property
    def bound(self) -> str:
        what = "compute" if self.seconds_compute >= self.seconds_bandwidth else "memory bandwidth"
        return f"{what}; {self.limit}" if self.limit else what


@dataclass(frozen=True)
class Fit:
    stage: str
    setting: str
    batch: int
    estimate_bytes: float
    """With the margin."""
    largest: int


@dataclass
class RoundPlan:
    index: int
    prompts: int
    stages: list[Stage]

    @property
    def gpu_seconds(self) -> float:
        return sum(s.gpu_seconds for s in self.stages)

    @property
    def wall_seconds(self) -> float:
        return sum(s.wall_seconds for s in self.stages)


@dataclass
class Plan:
    config: SailConfig
    gpu: Gpu
    gpus: int
    mfu_override: float | None
    unet_params: int
    forward_gflop: float
    """One UNet forward of one image at the configured resolution, as counted."""
    seed: list[Stage]
    baseline_eval: Stage
    rounds: list[RoundPlan]
    eval_prompts: int = 500
    gpus_per_host: int = 8
    fits: list[Fit] = field(default_factory=list)

    @property
    def gpu_seconds(self) -> float:
        return (sum(s.gpu_seconds for s in self.seed) + self.baseline_eval.gpu_seconds
                + sum(r.gpu_seconds for r in self.rounds))

    @property
    def wall_seconds(self) -> float:
        return (sum(s.wall_seconds for s in self.seed) + self.baseline_eval.wall_seconds
                + sum(r.wall_seconds for r in self.rounds))


# --- traces, memoised per setting ---------------------------------------------------------------------

def _model_key(model: ModelConfig) -> str:
    return model.model_dump_json()


@lru_cache(maxsize=16)
def _sampling(model_json: str, sampler_json: str, images: int) -> Trace:
    return workloads.trace_sampling(ModelConfig.model_validate_json(model_json),
                                    SamplerConfig.model_validate_json(sampler_json), images)


@lru_cache(maxsize=16)
def _ranking(model_json: str, rows: int) -> Trace:
    return workloads.trace_ranking(ModelConfig.model_validate_json(model_json), rows)


@lru_cache(maxsize=16)
def _dpo(model_json: str, train_json: str, micro: int, accumulation: int) -> Trace:
    return workloads.trace_dpo(ModelConfig.model_validate_json(model_json), TrainConfig.model_validate_json(train_json),
                               micro, accumulation)


@lru_cache(maxsize=16)
def _decode(model_json: str, images: int) -> Trace:
    return workloads.trace_decode(ModelConfig.model_validate_json(model_json), images)


@lru_cache(maxsize=4)
def _frozen_bytes(model_json: str) -> int:
    return workloads.frozen_parts_bytes(ModelConfig.model_validate_json(model_json))


@lru_cache(maxsize=4)
def _unet_params(family: str) -> int:
    return workloads.unet_parameters(ModelConfig(family=family, source="-"))  # type: ignore[arg-type]


def _train_json(train: TrainConfig) -> str:
    # only what changes the traced step (not the step counts or learning rate)
    keep = ("optimizer", "mixed_precision", "gradient_checkpointing", "max_grad_norm", "adam_betas", "seed")
    return TrainConfig(**{k: getattr(train, k) for k in keep}).model_dump_json()  # type: ignore[arg-type]


def line_memory(t: Trace, batch: int, extra: float) -> Memory:
    """The traced peak as a line in the batch: weights, their casts, gradients and optimizer state stay;
    activations and temporaries at the peak grow in proportion."""
    return Memory(t.static_bytes, t.dynamic_bytes / batch, batch, extra)


inference_memory = line_memory


def dpo_memory(model: ModelConfig, train: TrainConfig, micro: int, accumulation: int,
               extra: float) -> tuple[Memory, Trace]:
    t = _dpo(_model_key(model), _train_json(train), micro, min(accumulation, 2))
    return line_memory(t, micro, extra), t


# --- the stages ------------------------------------------------------------------------------------

def _mfu(family: str, work: str, batch: int, checkpointing: bool, override: float | None) -> tuple[float, str]:
    if override is not None:
        return override, "--mfu"
    anchor = mfu_anchor(family, work, batch, checkpointing)
    return anchor.mfu, anchor.describe()


def _bandwidth_seconds(calls: float, weight_bytes: float, gpu: Gpu) -> float:
    return calls * weight_bytes / (gpu.bandwidth_tb_s * 1e12) if gpu.bandwidth_tb_s else 0.0


def _compute_seconds(flops: float, gpu: Gpu, mfu: float) -> float:
    return flops / (gpu.peak_bf16_tflops * 1e12 * mfu) if gpu.peak_bf16_tflops else math.inf


def sampling_stage(name: str, config: SailConfig, sampler: SamplerConfig, images: int, gpu: Gpu, gpus: int,
                   override: float | None, shards: int, setting: str, work: str) -> Stage:
    model = config.model
    t = _sampling(_model_key(model), sampler.model_dump_json(), sampler.batch_size)
    guided = 2 if sampler.guidance_scale != 1.0 else 1
    forwards = images * sampler.steps * guided
    flops = t.flops / (sampler.batch_size * guided) * forwards
    mfu, source = _mfu(model.family, "forward", sampler.batch_size * guided, False, override)
    unet_bytes = t.at_peak.get("Parameter", 0)
    used = max(1, min(gpus, shards))
    return Stage(name, work, forwards, flops, setting,
                 inference_memory(t, sampler.batch_size, _frozen_bytes(_model_key(model))), mfu, source, used,
                 _compute_seconds(flops, gpu, mfu),
                 _bandwidth_seconds(forwards / (sampler.batch_size * guided), unet_bytes, gpu),
                 f"{shards} shard(s) for {gpus} GPUs" if shards < gpus else "")


def ranking_stage(config: SailConfig, candidates: int, gpu: Gpu, gpus: int, override: float | None,
                  shards: int) -> Stage:
    model, reward = config.model, config.reward
    rows = reward.batch_size
    t = _ranking(_model_key(model), rows)
    draws = reward.k_draws if reward.estimator == "fixed" else reward.k_max
    forwards = candidates * draws * 2
    flops = t.flops / (2 * rows) * forwards
    mfu, source = _mfu(model.family, "forward", rows, False, override)
    weights = t.at_peak.get("Parameter", 0)
    how = "at most " if reward.estimator == "sequential" else ""
    used = max(1, min(gpus, shards))
    return Stage("rank", f"{candidates:,} candidates × {how}K={draws} draws × 2 (policy + reference)", forwards, flops,
                 "reward.batch_size", inference_memory(t, rows, _frozen_bytes(_model_key(model))), mfu, source, used,
                 _compute_seconds(flops, gpu, mfu),
                 _bandwidth_seconds(forwards / rows, weights / (2 if model.train_mode == "full" else 1), gpu),
                 f"{shards} shard(s) for {gpus} GPUs" if shards < gpus else "")


def train_processes(train: TrainConfig, gpus: int, gpus_per_host: int) -> int:
    """DPO runs on one host's GPUs (``runtime.train_processes`` ≤ its GPUs): the most processes that split
    the effective batch into whole micro-batches."""
    for n in range(min(gpus, gpus_per_host), 0, -1):
        if train.effective_batch_pairs % (n * train.micro_batch_pairs) == 0:
            return n
    return 1


def dpo_stage(name: str, config: SailConfig, train: TrainConfig, pairs: int, gpu: Gpu, gpus: int,
              gpus_per_host: int, override: float | None, work: str) -> Stage:
    model = config.model
    procs = train_processes(train, gpus, gpus_per_host)
    accumulation = train.effective_batch_pairs // (procs * train.micro_batch_pairs)
    extra = float(_frozen_bytes(_model_key(model)))
    memory, t = dpo_memory(model, train, train.micro_batch_pairs, accumulation, extra)
    if procs > 1:  # DDP's gradient buckets: a second copy of the gradients (accelerate's default)
        memory = Memory(memory.static_bytes, memory.per_item_bytes, memory.batch,
                        extra + t.at_peak.get("Gradient", 0))
    steps = train.max_steps or max(1, math.ceil(train.epochs * pairs / train.effective_batch_pairs))
    processed = steps * train.effective_batch_pairs
    unet_forward_flops = forward_flops(config)
    flops = t.flops / train.micro_batch_pairs * processed
    per_pair_forwards = round(t.flops / train.micro_batch_pairs / unet_forward_flops, 1)
    mfu, source = _mfu(model.family, "dpo", train.micro_batch_pairs, train.gradient_checkpointing, override)
    weights = t.at_peak.get("Parameter", 0)
    calls = processed / train.micro_batch_pairs * (3 if train.gradient_checkpointing else 2)
    limit = f"the DPO barrier: {procs} of {gpus} GPUs (one host)" if procs < gpus else ""
    return Stage(name, f"{work}: {steps:,} steps × {train.effective_batch_pairs} pairs, micro-batch "
                 f"{train.micro_batch_pairs} × {accumulation} on {procs} process(es); ≈{per_pair_forwards:g} "
                 f"forward-equivalents per pair", processed * 2 * (3 if train.gradient_checkpointing else 2), flops,
                 f"{'seed_train' if name.startswith('seed') else 'round_train'}.micro_batch_pairs", memory, mfu,
                 source, procs, _compute_seconds(flops, gpu, mfu), _bandwidth_seconds(calls, weights, gpu), limit)


def forward_flops(config: SailConfig) -> float:
    """FLOPs of one UNet forward of one image, from the traced generation step (its count is linear in the batch)."""
    s = config.generate.sampler
    t = _sampling(_model_key(config.model), s.model_dump_json(), s.batch_size)
    return t.flops / (s.batch_size * (2 if s.guidance_scale != 1.0 else 1))


def evaluation_stage(name: str, config: SailConfig, prompts: int, gpu: Gpu, override: float | None) -> Stage:
    """Sampling the evaluation prompts (one process) and decoding them; the scorers are left out."""
    model, ev = config.model, config.eval
    images = prompts * ev.seeds_per_prompt
    sample = sampling_stage(name, config, ev.sampler, images, gpu, 1, override, 1, "eval.sampler.batch_size", "")
    decode = _decode(_model_key(model), ev.sampler.batch_size)
    decode_flops = decode.flops / ev.sampler.batch_size * images
    mfu = sample.mfu
    vae = decode.at_peak.get("Parameter", 0)
    decode_mem = inference_memory(decode, ev.sampler.batch_size,
                                  _frozen_bytes(_model_key(model)) - vae + sample.memory.static_bytes)
    memory = max(sample.memory, decode_mem, key=lambda m: m.estimate_bytes)
    guided = 2 if ev.sampler.guidance_scale != 1.0 else 1
    return Stage(name, f"{images:,} images × {ev.sampler.steps} steps × {guided} (cfg) + VAE decode "
                 f"(scorers left out)", sample.unet_forwards, sample.flops + decode_flops,
                 "eval.sampler.batch_size", memory, mfu, sample.mfu_source, 1,
                 sample.seconds_compute + _compute_seconds(decode_flops, gpu, mfu), sample.seconds_bandwidth,
                 "one evaluation task")


def round_pairs(config: SailConfig, prompts: int) -> int:
    """Pairs a round trains on (``sail_core.algorithm.mixup``): one self pair per prompt, the other sources
    filling their fractions."""
    size, alpha = config.mixup.size, config.mixup.alpha
    if size == "seed_size":
        return config.seed_data.seed_size
    if isinstance(size, int):
        return size
    return round(prompts / alpha) if alpha > 0 else prompts


def build_plan(config: SailConfig, gpu: Gpu, gpus: int = 1, *, mfu: float | None = None, eval_prompts: int = 500,
               gpus_per_host: int = 8, rounds: int | None = None) -> Plan:
    if gpus < 1:
        raise InputError(f"must be at least 1 (got {gpus})", parameter="--gpus")
    if mfu is not None and not 0 < mfu <= 1:
        raise InputError(f"must be in (0, 1] (got {mfu})", parameter="--mfu")
    if config.model.codec != "vae":
        raise InputError("sail plan covers the SD1.5 and SDXL families (the embedded world runs on a CPU)",
                         parameter="model.codec")
    ev_prompts = config.eval.max_prompts or eval_prompts
    n, count = config.generate.n_candidates, rounds if rounds is not None else config.rounds
    seed_pairs = config.seed_data.seed_size
    seed = [dpo_stage("seed DPO (iteration 0)", config, config.seed_train, seed_pairs, gpu, gpus, gpus_per_host, mfu,
                      f"{seed_pairs:,} human pairs"),
            evaluation_stage("evaluate iteration 0", config, ev_prompts, gpu, mfu)]
    baseline = evaluation_stage("evaluate the base", config, ev_prompts, gpu, mfu)
    plans = []
    for r in range(count):
        prompts = config.prompts.per_round[r]
        shards = math.ceil(prompts / config.generate.prompts_per_shard)
        s = config.generate.sampler
        guided = 2 if s.guidance_scale != 1.0 else 1
        pairs = round_pairs(config, prompts)
        stages = [
            sampling_stage("generate", config, s, prompts * n, gpu, gpus, mfu, shards, "generate.sampler.batch_size",
                           f"{prompts:,} prompts × N={n} × {s.steps} steps × {guided} (cfg)"),
            ranking_stage(config, prompts * n, gpu, gpus, mfu, shards),
            dpo_stage("DPO", config, config.round_train, pairs, gpu, gpus, gpus_per_host, mfu,
                      f"{pairs:,} pairs (α={config.mixup.alpha:g}, {config.mixup.size})"),
            evaluation_stage("evaluate", config, ev_prompts, gpu, mfu),
        ]
        plans.append(RoundPlan(r + 1, prompts, stages))
    plan = Plan(config, gpu, gpus, mfu, _unet_params(config.model.family), forward_flops(config) / 1e9,
                seed, baseline, plans, eval_prompts, gpus_per_host)
    plan.fits = fits(plan)
    return plan


def fits(plan: Plan) -> list[Fit]:
    out: dict[str, Fit] = {}
    stages = [*plan.seed, plan.baseline_eval, *(s for r in plan.rounds[:1] for s in r.stages)]
    for s in stages:
        key = s.batch_setting
        fit = Fit(s.name, s.batch_setting, s.memory.batch, s.memory.with_margin(),
                  s.memory.largest_fitting(plan.gpu.memory_bytes))
        if key not in out or fit.estimate_bytes > out[key].estimate_bytes:
            out[key] = fit
    return list(out.values())


def fit_problems(config: SailConfig, gpu: Gpu, gpus: int = 1) -> list[str]:
    """One line per stage whose configured batch does not fit ``gpu``: the setting, the estimate, the
    device's memory and the largest batch that fits (the preflight's check)."""
    plan = build_plan(config, gpu, gpus, rounds=min(1, config.rounds))
    problems = []
    for fit in plan.fits:
        if fit.estimate_bytes <= gpu.memory_bytes:
            continue
        largest = (f"the largest that fits is {fit.largest}: set {fit.setting}={fit.largest}" if fit.largest else
                   f"not even 1 fits ({_one(plan, fit)})")
        problems.append(f"{fit.setting}={fit.batch}: {fit.stage} needs an estimated {fit.estimate_bytes / GIB:.1f} GiB "
                        f"per GPU, and the {gpu.name} has {gpu.memory_gib:.1f} GiB; {largest}")
    return problems


def _one(plan: Plan, fit: Fit) -> str:
    stage = next(s for s in [*plan.seed, *(s for r in plan.rounds for s in r.stages)] if s.batch_setting == fit.setting)
    hint = "; try model.train_mode=lora or a larger GPU" if "train" in fit.setting else ""
    return f"{stage.memory.with_margin(1) / GIB:.1f} GiB at 1{hint}"


