"""Typed configuration of a SAIL run: one pydantic model per stage, composed into :class:`SailConfig`.

A run is fully described by a ``SailConfig``: presets (``sail_core/presets/*.yaml``) give complete
configs for the embedded world, SD1.5 and SDXL, and ``a.b.c=value`` overrides change single fields.
Every field that the paper leaves ambiguous is an explicit option here, documented in README.md.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sail_core.errors import InputError

DType = Literal["float32", "bfloat16", "float16"]
PRESETS_DIR = Path(__file__).parent / "presets"


class _Strict(BaseModel):
    # inf and nan pass ``gt=0`` bounds (``learning_rate=inf``); no setting of a run means either
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoraSettings(_Strict):
    rank: int = Field(8, gt=0)
    alpha: float = Field(8.0, gt=0)
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")


class ModelConfig(_Strict):
    """Which diffusion model to align and how its UNet is trained."""

    family: Literal["sd15", "sdxl"] = "sd15"
    """Conditioning layout: ``sd15`` (one CLIP text encoder; also the embedded world) or ``sdxl``
    (two text encoders, pooled embeddings and micro-conditioning time ids)."""
    source: str
    """A Hugging Face Hub id or a local diffusers folder (``unet/``, ``text_encoder/``, ...).
    ``world`` names the embedded world's shipped model."""
    revision: str | None = None
    variant: str | None = None
    vae_source: str | None = None
    """Optional separate VAE (e.g. ``madebyollin/sdxl-vae-fp16-fix`` for half-precision SDXL)."""
    codec: Literal["vae", "pixel"] = "vae"
    """``pixel`` trains directly on images in [-1, 1] (the embedded world has no VAE)."""
    resolution: int = Field(512, gt=0)
    train_mode: Literal["full", "lora"] = "full"
    lora: LoraSettings = LoraSettings()
    frozen_dtype: DType = "float32"
    """dtype of the frozen parts (VAE, text encoders) and of inference-only UNets."""
    reference_dtype: DType = "float32"
    """dtype of the frozen reference UNet copy in full fine-tuning (bf16 on GPUs halves its memory)."""
    empty_prompt_zeros: bool = False
    """Unconditional embedding = zeros (SDXL's ``force_zeros_for_empty_prompt``) instead of encoding ""."""
    local_files_only: bool = False


class SamplerConfig(_Strict):
    kind: Literal["ddpm", "ddim"] = "ddim"
    steps: int = Field(50, gt=0)
    guidance_scale: float = Field(7.5, ge=0)
    eta: float = 0.0
    batch_size: int = Field(16, gt=0)


class GenerateConfig(_Strict):
    n_candidates: int = Field(8, ge=1)
    """Samples per prompt; self-ranked pairs need at least 2 (checked when alpha > 0)."""
    seed: int = 0
    sampler: SamplerConfig = SamplerConfig()
    prompts_per_shard: int = Field(64, gt=0)
    """Generation is resumable at shard granularity: finished shards are never regenerated."""


class RewardConfig(_Strict):
    """Self-reward ranking (paper Eq. 8-10)."""

    k_draws: int = Field(10, gt=0)
    beta: float = Field(5000.0, gt=0)
    common_random_numbers: bool = True
    """All candidates of a prompt share the same K (t, eps) draws, so their reward *differences*
    do not carry the noise of the draws (see tests/algorithm/test_reward.py for the variance ratio)."""
    reference: Literal["base", "iter0", "previous"] = "base"
    """Reference of the judge: ``base`` (pretrained model; default), ``iter0`` (seed-DPO model) or
    ``previous`` (the model the current policy was trained against). See README."""
    selection: Literal["best_worst", "random"] = "best_worst"
    batch_size: int = Field(32, gt=0)
    timestep_range: tuple[int, int] | None = None
    """Half-open [lo, hi) range of t for the draws; None = the whole training range."""
    estimator: Literal["fixed", "sequential"] = "fixed"
    """How many draws a prompt's candidates get (``sail_core.algorithm.ranking``): ``fixed``, K =
    ``k_draws`` for every prompt (the paper's); ``sequential``, blocks of ``block_draws`` until the
    best and the worst candidate are settled at ``confidence`` (``sail_core.algorithm.sequential``),
    at most ``k_max`` draws."""
    k_max: int = Field(20, gt=0)
    """Sequential: the cap on a prompt's draws (a multiple of ``block_draws``)."""
    block_draws: int = Field(2, gt=0)
    """Sequential: draws per block; the stopping rule looks after each block."""
    confidence: float = Field(0.9, gt=0.0, lt=1.0)
    """Sequential: 1 − α of the simultaneous statement "no other candidate's reward is above the chosen
    best's, or below the chosen worst's, by more than ``indifference``"."""
    indifference: float = Field(0.0, ge=0.0)
    """Sequential: δ, in reward units (log-odds of Eq. 9): candidates whose rewards differ by less are
    not worth more draws to tell apart."""
    stratified: bool = False
    """Each block's (or the fixed K's) timesteps come one from each of equal strata of the range."""
    antithetic: bool = False
    """Draws come in pairs (t, ε), (t, −ε) (blocks and K must then be even)."""

    @model_validator(mode="after")
    def _estimator_fits(self) -> RewardConfig:
        if self.estimator == "sequential":
            if not self.common_random_numbers:
                raise ValueError("reward.estimator=sequential compares candidates on shared draws: it needs "
                                 "reward.common_random_numbers=true")
            if self.selection != "best_worst":
                raise ValueError("reward.estimator=sequential settles the best and the worst candidate: it needs "
                                 "reward.selection=best_worst")
            if self.k_max % self.block_draws or self.k_max < 2 * self.block_draws:
                raise ValueError(f"reward.k_max ({self.k_max}) must be a multiple of reward.block_draws "
                                 f"({self.block_draws}) and hold at least two blocks")
        draws = self.block_draws if self.estimator == "sequential" else self.k_draws
        if self.antithetic and draws % 2:
            name = "reward.block_draws" if self.estimator == "sequential" else "reward.k_draws"
            raise ValueError(f"reward.antithetic draws come in pairs: {name} ({draws}) must be even")
        return self


class MixupConfig(_Strict):
    alpha: float = Field(0.25, ge=0.0, le=1.0)
    """Fraction of self-generated pairs in a round's training set."""
    real_generated: float = Field(0.0, ge=0.0, le=1.0)
    """Fraction of real ≻ generated pairs (RealAlign: a real image over the current model's sample for
    its caption). The human seed pairs get 1 − alpha − real_generated − real_perturbed."""
    real_perturbed: float = Field(0.0, ge=0.0, le=1.0)
    """Fraction of real ≻ perturbed pairs (a real image over a degraded copy of itself)."""
    size: Literal["self_all", "seed_size", "real_all"] | int = "self_all"
    """How large the mixed set is: ``self_all`` keeps every self pair and adds the other sources to
    reach the fraction alpha; ``seed_size`` makes the set as large as the seed set; ``real_all`` keeps
    every real pair (the real source with the most pairs per unit of fraction is kept whole, the others
    fill their fractions; the choice for pure RealAlign, alpha = 0 and no human pairs); an int fixes it."""

    # RealAlign: the fractions of all sources must leave a non-negative share to the human pairs
    @model_validator(mode="after")
    def _fractions_fit(self) -> MixupConfig:
        total = self.alpha + self.real_generated + self.real_perturbed
        if total > 1.0 + 1e-9:
            raise ValueError(
                f"mixup.alpha ({self.alpha}) + mixup.real_generated ({self.real_generated}) + "
                f"mixup.real_perturbed ({self.real_perturbed}) = {total:g} must be <= 1 "
                "(the human seed pairs get the rest)"
            )
        return self


class TrainConfig(_Strict):
    """Diffusion-DPO training (Wallace et al. 2024), the loss of the reference implementation."""

    beta: float = Field(5000.0, gt=0)
    learning_rate: float = Field(1.28e-6, gt=0)
    optimizer: Literal["adamw", "adafactor", "adamw8bit"] = "adamw"
    weight_decay: float = 1e-2
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    effective_batch_pairs: int = Field(128, gt=0)
    micro_batch_pairs: int = Field(4, gt=0)
    warmup_steps: int = Field(0, ge=0)
    max_steps: int | None = Field(None, gt=0)
    """Optimizer steps; None = one pass (epoch) over the round's pairs."""
    epochs: float = Field(1.0, gt=0)
    max_grad_norm: float | None = 1.0
    divergence_loss_spike: float | None = Field(None, gt=1)
    """Stop when a step's loss exceeds this × its running median (at least ln 2); None (the default):
    a loss is only checked to be finite. Off by default because a DPO loss at large β is heavy-tailed:
    healthy world runs reach 4–8× their running median, and one reached 11× (a hard batch, not a
    divergence); the gradient norm, whose healthy spikes stay within 3×, is the reliable signal."""
    divergence_grad_spike: float | None = Field(100.0, gt=1)
    """Stop when a step's gradient norm (before clipping) exceeds this × its running median."""
    divergence_weight_growth: float | None = Field(10.0, gt=1)
    """Stop when the trainable weights' norm exceeds this × its value at the start of training."""
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    gradient_checkpointing: bool = False
    checkpoint_every: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _batch_divides(self) -> TrainConfig:
        if self.effective_batch_pairs % self.micro_batch_pairs:
            raise ValueError(
                f"effective_batch_pairs ({self.effective_batch_pairs}) must be a multiple of "
                f"micro_batch_pairs ({self.micro_batch_pairs})"
            )
        return self


class SeedDataConfig(_Strict):
    """The human seed set: Pick-a-Pic v2 shards (or files in that schema)."""

    pairs: tuple[str, ...] = ()
    """Parquet files or globs in the Pick-a-Pic v2 schema (caption, jpg_0, jpg_1, label_0, label_1)."""
    seed_size: int = Field(50_000, gt=0)
    seed: int = 0
    encode_batch_size: int = Field(16, gt=0)
    pairs_per_shard: int = Field(1024, gt=0)
    """Seed encoding is resumable at shard granularity."""


class PromptPoolConfig(_Strict):
    """Where each round's prompts come from. Rounds draw disjoint slices of one shuffled pool."""

    files: tuple[str, ...] = ()
    """Extra prompt files (text, one per line, or Parquet with a ``caption``/``prompt`` column).
    Empty = the seed data's remaining captions (the paper's setting)."""
    per_round: tuple[int, ...] = (10_000, 20_000, 20_000)
    seed: int = 0


class EvalConfig(_Strict):
    prompts: tuple[str, ...] = ()
    """Prompt sets: ``<kind>:<path>`` with a kind of ``sail_core.data.prompt_sets.LOADERS``
    (``pickapic_v2_validation_unique``, ``partiprompts``, ``hpsv2_benchmark``, ``text``) or a path whose
    format is inferred; ``world`` = the embedded world's held-out prompts."""
    max_prompts: int | None = Field(None, gt=0)
    """At most this many prompts, taken evenly across categories (None = all)."""
    seeds_per_prompt: int = Field(1, gt=0)
    seed: int = 0
    sampler: SamplerConfig = SamplerConfig()
    scorers: tuple[str, ...] = ()
    """``world`` (the embedded world's hidden human) or names of ``sail_core.evaluation.scorers``."""
    scorer_sources: dict[str, str] = {}
    """Per scorer, its main weights: a Hub id or a local file/folder (default: the published ones)."""
    scorer_options: dict[str, dict[str, str | int]] = {}
    """Per scorer, its other pieces (e.g. ``{"aesthetic": {"clip": "/models/clip-vit-large-patch14"}}``)."""
    grid_prompts: int = Field(8, ge=0)


# --- RealAlign: real images as preference anchors ------------------------------------------------

PerturbationKind = Literal["blur", "noise", "jpeg", "colour_shift", "downscale", "contrast"]
# the strength each kind accepts: (lowest, highest, whether the lowest is excluded)
_STRENGTH_RANGES: dict[str, tuple[float, float, bool]] = {
    "blur": (0.0, float("inf"), True), "noise": (0.0, 1.0, True), "jpeg": (0.0, 0.99, True),
    "colour_shift": (0.0, 1.0, True), "downscale": (1.0, float("inf"), True), "contrast": (0.0, 1.0, True),
}


class PerturbationConfig(_Strict):
    """One way to degrade a real image into a rejected sample (``sail_core.data.perturb``).

    Strengths, applied to the image at the model's resolution:

    * ``blur``: Gaussian blur, sigma in pixels (> 0);
    * ``noise``: additive Gaussian noise, std in [0, 1] intensity units (0 < s <= 1);
    * ``jpeg``: JPEG re-encoding at quality round(100 · (1 − s)) (0 < s <= 0.99);
    * ``colour_shift``: one RGB offset per image in a seeded random direction, length s in [0, 1]
      intensity units (0 < s <= 1);
    * ``downscale``: down by the factor s (> 1, box filter), then back up (bicubic);
    * ``contrast``: contrast towards the image's mean grey, multiplied by 1 − s (0 < s <= 1).
    """

    kind: PerturbationKind
    strength: float

    @model_validator(mode="after")
    def _strength_in_range(self) -> PerturbationConfig:
        lo, hi, open_lo = _STRENGTH_RANGES[self.kind]
        if not (lo < self.strength if open_lo else lo <= self.strength) or self.strength > hi:
            bound = f"> {lo:g}" if hi == float("inf") else f"in {'(' if open_lo else '['}{lo:g}, {hi:g}]"
            raise ValueError(f"real.perturbations: strength {self.strength} of {self.kind!r} must be {bound}")
        return self


class RealAnchorConfig(_Strict):
    """Real images as preference anchors (RealAlign): a real image for a caption is the preferred
    sample; the rejected one is the current model's sample for that caption or a perturbed copy.

    Accepted ``sources`` (each a path or glob; see ``sail_core.data.real_images``):

    * a folder of images (``.jpg .jpeg .png .webp .bmp``) with captions in ``metadata.jsonl`` or
      ``captions.jsonl`` (JSON lines with ``file_name`` and ``caption`` or ``text``), or in
      ``captions.csv`` (header with ``file_name`` and ``caption`` or ``text``), or, without either,
      one ``<image stem>.txt`` per image;
    * a Parquet file of image bytes + caption: image column ``image`` (bytes, or a Hugging Face
      ``{bytes, path}`` struct), ``jpg``, ``png``, ``webp`` or ``image_bytes``; caption column
      ``caption``, ``text``, ``txt`` or ``prompt`` (first present; or set ``image_column`` /
      ``caption_column``);
    * a WebDataset ``.tar`` shard: samples ``<key>.jpg|jpeg|png|webp`` with ``<key>.txt`` or a
      ``<key>.json`` holding ``caption``/``text``;
    * ``world``: the embedded world's shipped real images.
    """

    sources: tuple[str, ...] = ()
    image_column: str | None = None
    """Parquet image column; None = the first of the accepted names present."""
    caption_column: str | None = None
    """Parquet caption column; None = the first of the accepted names present."""
    max_images: int | None = Field(None, gt=0)
    """Use a seeded random subset of this many images (None = all), read in source order."""
    seed: int = 0
    negatives: tuple[Literal["generated", "perturbed"], ...] = ("generated", "perturbed")
    perturbations: tuple[PerturbationConfig, ...] = (
        PerturbationConfig(kind="blur", strength=2.0), PerturbationConfig(kind="noise", strength=0.1),
        PerturbationConfig(kind="jpeg", strength=0.9), PerturbationConfig(kind="colour_shift", strength=0.15),
    )
    perturbed_per_image: int = Field(1, gt=0)
    """Perturbed negatives per image: this many distinct entries of ``perturbations``, a seeded draw per image."""
    generated_per_image: int = Field(1, gt=0)
    """Generated negatives per image and round: the first this many candidates generated for its caption."""
    resize: Literal["center_crop", "error"] = "center_crop"
    """``center_crop``: shorter side to model.resolution (bicubic), then a centred square crop (the seed
    images' preprocessing); ``error``: an image that is not exactly resolution × resolution is an input error."""
    allow_upscale: bool = True
    """False: an image whose shorter side is below model.resolution is an input error (an upsampled real
    image is blurry, and a blurry winner teaches blur)."""
    encode_batch_size: int = Field(16, gt=0)
    images_per_shard: int = Field(256, gt=0)
    """Encoding is resumable at shard granularity."""

    @model_validator(mode="after")
    def _negatives_possible(self) -> RealAnchorConfig:
        if len(set(self.negatives)) != len(self.negatives):
            raise ValueError(f"real.negatives {list(self.negatives)} lists a kind twice")
        if "perturbed" in self.negatives and self.perturbed_per_image > len(self.perturbations):
            raise ValueError(f"real.perturbed_per_image ({self.perturbed_per_image}) exceeds the "
                             f"{len(self.perturbations)} entries of real.perturbations")
        return self


_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


class RuntimeConfig(_Strict):
    """Where and how stages run. Only ``train_processes`` can change results by design (it changes the
    noise each process draws), so it is the only runtime setting in a cache key. ``threads``, the
    device, ``compile`` and ``channels_last`` change only the last bits of floating-point sums (see README,
    reproducibility)."""

    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ``mps``."""
    train_processes: int = Field(1, gt=0)
    """> 1: Diffusion-DPO runs under ``accelerate launch`` over this many GPUs of the machine."""
    threads: int | None = Field(None, gt=0)
    """CPU threads of PyTorch's intra-op pool (None: PyTorch's default, one per core). A run is bit-for-bit
    reproducible for a given seed and thread count on the same kind of machine: the thread count sets how
    sums are split, hence their last bits."""
    shard_workers: int = Field(0, ge=0)
    """> 0: generation and ranking shards run as ``sail-shard`` flow runs on this many pool workers."""
    shard_poll_seconds: float = Field(5.0, gt=0)
    """How often a round asks the Prefect API whether its shard runs finished (Prefect's own default is 5 s;
    a shorter interval ends the round sooner after its last shard at the cost of more API calls)."""
    shard_wait_warning_seconds: float = Field(60.0, gt=0)
    """A round whose shard runs have all waited this long to start says so in its log, once, with the
    reason when it can tell (no worker polls the ``gpu`` queue)."""
    compile: bool = False
    """``torch.compile`` the UNets that sample (generation, evaluation) and rank; training stays eager.
    Each new batch shape compiles once (about a minute for SD1.5 on a GPU, more for SDXL; a shard's
    smaller last batch adds one), then runs faster. Outputs equal eager ones up to float rounding,
    which is why this setting is in no cache key."""
    channels_last: bool = False
    """Store those UNets' convolution weights channels-last (NHWC), the layout GPU tensor cores
    prefer (the usual companion of ``compile``); outputs equal up to float rounding."""
    checkpoint_push_seconds: float = Field(600.0, ge=0)
    """A run in a remote store pushes a training's latest step checkpoint (so another host resumes
    from it) at most this often: an SDXL step checkpoint is 10 GB."""

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not _DEVICE.fullmatch(value):
            raise ValueError(f"{value!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
        return value


class ExportConfig(_Strict):
    """The model the run hands out (``sail export`` and the flow's last stage, ``sail_core.export``)."""

    enabled: bool = True
    """The flow ends with the export stage, writing ``<run>/export/``."""
    model: str = "best"
    """``best`` (the highest ``metric`` among the trained models), ``last``, or a label such as ``round-03``."""
    metric: str | None = None
    """What ``best`` maximises; None: the report's headline metric (the first its evaluations list)."""
    format: Literal["diffusers", "kohya"] = "diffusers"
    """LoRA: ``kohya`` adds the same LoRA with Kohya-style keys beside diffusers' file."""
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Weights' dtype; a pipeline folder in fp16/bf16 is saved as that diffusers variant."""
    fuse: bool = False
    """LoRA: write a complete pipeline with the LoRA fused into the UNet instead of the LoRA file."""


class SailConfig(_Strict):
    preset: str = "custom"
    model: ModelConfig
    seed_data: SeedDataConfig = SeedDataConfig()
    prompts: PromptPoolConfig = PromptPoolConfig()
    generate: GenerateConfig = GenerateConfig()
    reward: RewardConfig = RewardConfig()
    mixup: MixupConfig = MixupConfig()
    seed_train: TrainConfig = TrainConfig()
    """Diffusion-DPO on the human seed pairs (iteration 0)."""
    round_train: TrainConfig = TrainConfig()
    """Diffusion-DPO of each round, with the previous model as both init and reference."""
    eval: EvalConfig = EvalConfig()
    rounds: int = Field(3, ge=0)
    runtime: RuntimeConfig = RuntimeConfig()
    real: RealAnchorConfig = RealAnchorConfig()
    """Real-image anchors (RealAlign); used only when mixup.real_generated or mixup.real_perturbed > 0."""
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def _enough_prompt_budgets(self) -> SailConfig:
        if self.rounds > len(self.prompts.per_round):
            raise ValueError(
                f"rounds={self.rounds} but prompts.per_round has only {len(self.prompts.per_round)} entries"
            )
        return self

    @model_validator(mode="after")
    def _sources_possible(self) -> SailConfig:
        if self.mixup.alpha > 0 and self.generate.n_candidates < 2:
            raise ValueError(f"self-ranked pairs (mixup.alpha > 0) need generate.n_candidates >= 2, "
                             f"got {self.generate.n_candidates}")
        human = 1.0 - self.mixup.alpha - self.mixup.real_generated - self.mixup.real_perturbed
        if human > 1e-9 and not self.seed_data.pairs:
            raise ValueError(f"mixup gives human pairs a fraction of {human:g} but seed_data.pairs is empty")
        if self.mixup.alpha > 0 and not self.seed_data.pairs and not self.prompts.files:
            raise ValueError("self-ranked rounds draw prompts from the seed data or prompts.files: set one")
        return self

    @model_validator(mode="after")
    def _real_anchors_configured(self) -> SailConfig:
        for fraction, negative in (("real_generated", "generated"), ("real_perturbed", "perturbed")):
            if getattr(self.mixup, fraction) > 0:
                if not self.real.sources:
                    raise ValueError(f"mixup.{fraction} > 0 needs real images: set real.sources")
                if negative not in self.real.negatives:
                    raise ValueError(f"mixup.{fraction} > 0 but real.negatives does not include {negative!r}")
        return self

    @model_validator(mode="after")
    def _export_fits(self) -> SailConfig:
        if self.model.train_mode != "lora" and (self.export.fuse or self.export.format != "diffusers"):
            raise ValueError("export.fuse and export.format=kohya apply to LoRA runs (model.train_mode=lora); a "
                             "fully fine-tuned UNet is exported as a complete pipeline")
        return self

    def digest(self, *sections: str) -> str:
        """Stable hash of the given sections (all if none): the part of a cache key a config supplies."""
        data = self.model_dump(mode="json")
        if sections:
            data = {s: _dig(data, s) for s in sections}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _dig(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    model: type[BaseModel] | None = SailConfig
    for part in parts[:-1]:
        field = model.model_fields.get(part) if model is not None else None
        section = field.annotation if field is not None else None
        model = section if isinstance(section, type) and issubclass(section, BaseModel) else None
        if part not in node and model is not None:
            node[part] = {}  # a section the file leaves at its defaults (e.g. ``real`` in the presets)
        if not isinstance(node.get(part), dict):
            raise InputError("no such config section (`sail config` prints every field)", parameter=dotted)
        node = node[part]
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"reward.k_draws=4"`` → ``("reward.k_draws", 4)``; the value is parsed as YAML."""
    if "=" not in text:
        raise InputError("an override must look like section.field=value", parameter=text)
    key, raw = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InputError(f"the value {raw!r} is not valid YAML ({_yaml_problem(exc)})", parameter=key.strip()) from exc


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_yaml_mapping(path: Path, holds: str = "config sections (model:, generate:, ...)") -> dict[str, Any]:
    """The mapping a YAML file (a config, an experiment spec) holds; anything else is an :class:`InputError`
    naming the file. ``holds`` says what the mapping should hold, for that error."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         "save it as UTF-8", file=path) from exc
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", file=path) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {_yaml_problem(exc)}", file=path) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"must be a mapping of {holds}, found a {type(data).__name__}", file=path)
    return data


def _read_config_file(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config; ``extends: <preset or file>`` starts from that config and overrides it."""
    if path in seen:
        raise InputError("config files extend each other in a cycle", file=path)
    data = read_yaml_mapping(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_path = _config_path(parent, relative_to=path.parent)
    return _merge(_read_config_file(parent_path, (*seen, path)), data)


def _config_path(name: str | Path, relative_to: Path | None = None) -> Path:
    path = Path(name)
    if not path.suffix:
        path = PRESETS_DIR / f"{name}.yaml"
        if not path.exists():
            raise InputError(f"unknown preset; choose one of {available_presets()} or a config file",
                             parameter=str(name))
        return path
    if relative_to is not None and not path.is_absolute():
        path = relative_to / path
    if not path.exists():
        raise InputError("config file does not exist", file=path)
    return path


def load_config(
    preset_or_file: str | Path,
    overrides: dict[str, Any] | list[str] | None = None,
) -> SailConfig:
    """Build a config from a preset name or a YAML/JSON file, then apply dotted overrides."""
    path = _config_path(preset_or_file)
    data = _read_config_file(path)
    data["preset"] = path.stem if path.parent == PRESETS_DIR else data.get("preset", path.stem)
    pairs = [parse_override(o) for o in overrides] if isinstance(overrides, list) else list((overrides or {}).items())
    for key, value in pairs:
        _set_dotted(data, key, value)
    try:
        return SailConfig.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc, path, dict(pairs)) from exc


def _config_error(exc: ValidationError, path: Path, overrides: Mapping[str, Any]) -> InputError:
    """The first invalid field as ``parameter 'a.b'``, and whether an override or the file set it."""
    errors = exc.errors()
    error = errors[0]
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "no such config field (`sail config` prints every field)"
    elif not isinstance(error.get("input"), dict) and repr(error.get("input")) not in message:
        message += f" (got {error.get('input')!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    # a field's error names its key; a check across fields (loc of the section) names the fields in its message
    set_by = next((k for k in overrides if key and (key == k or key.startswith(k + ".") or k.startswith(key + "."))
                   or k in message), None)
    if set_by is not None:
        return InputError(f"{message}{more}; set by the override {set_by}={overrides[set_by]!r}",
                          parameter=key or set_by)
    return InputError(message + more, file=path, parameter=key or None)
