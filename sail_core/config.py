"""Typed configuration of a SAIL run: one pydantic model per stage, composed into :class:`SailConfig`.

A run is fully described by a ``SailConfig``: presets (``sail_core/presets/*.yaml``) give complete
configs for the embedded world, SD1.5 and SDXL, and ``a.b.c=value`` overrides change single fields.
Every field that the paper leaves ambiguous is an explicit option here, documented in README.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from sail_core.errors import InputError

DType = Literal["float32", "bfloat16", "float16"]
PRESETS_DIR = Path(__file__).parent / "presets"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
    n_candidates: int = Field(8, ge=2)
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
    do not carry the noise of the draws (see tests/core/test_reward.py for the variance ratio)."""
    reference: Literal["base", "iter0", "previous"] = "base"
    """Reference of the judge: ``base`` (pretrained model; default), ``iter0`` (seed-DPO model) or
    ``previous`` (the model the current policy was trained against). See README."""
    selection: Literal["best_worst", "random"] = "best_worst"
    batch_size: int = Field(32, gt=0)
    timestep_range: tuple[int, int] | None = None
    """Half-open [lo, hi) range of t for the draws; None = the whole training range."""


class MixupConfig(_Strict):
    alpha: float = Field(0.25, ge=0.0, le=1.0)
    """Fraction of self-generated pairs in a round's training set."""
    size: Literal["self_all", "seed_size"] | int = "self_all"
    """How large the mixed set is: ``self_all`` keeps every self pair and adds human pairs to reach
    the fraction alpha; ``seed_size`` makes the set as large as the seed set; an int fixes it."""


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
    """Prompt set files; empty = the preset's default held-out prompts."""
    max_prompts: int | None = None
    seeds_per_prompt: int = Field(1, gt=0)
    seed: int = 0
    sampler: SamplerConfig = SamplerConfig()
    scorers: tuple[str, ...] = ()
    grid_prompts: int = Field(8, ge=0)


class RuntimeConfig(_Strict):
    """Where and how stages run. Only ``train_processes`` can change results (it changes the noise
    each process draws), so it is the only runtime setting in a cache key."""

    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``..."""
    train_processes: int = Field(1, gt=0)
    """> 1: Diffusion-DPO runs under ``accelerate launch`` over this many GPUs of the machine."""
    shard_workers: int = Field(0, ge=0)
    """> 0: generation and ranking shards run as ``sail-shard`` flow runs on this many pool workers."""


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

    @model_validator(mode="after")
    def _enough_prompt_budgets(self) -> SailConfig:
        if self.rounds > len(self.prompts.per_round):
            raise ValueError(
                f"rounds={self.rounds} but prompts.per_round has only {len(self.prompts.per_round)} entries"
            )
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
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise InputError("no such config section", parameter=dotted)
        node = node[part]
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"reward.k_draws=4"`` → ``("reward.k_draws", 4)``; the value is parsed as YAML."""
    if "=" not in text:
        raise InputError("an override must look like section.field=value", parameter=text)
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_config(
    preset_or_file: str | Path,
    overrides: dict[str, Any] | list[str] | None = None,
) -> SailConfig:
    """Build a config from a preset name or a YAML/JSON file, then apply dotted overrides."""
    path = Path(preset_or_file)
    if not path.suffix:
        path = PRESETS_DIR / f"{preset_or_file}.yaml"
        if not path.exists():
            raise InputError(f"unknown preset; choose one of {available_presets()} or a config file",
                             parameter=str(preset_or_file))
    if not path.exists():
        raise InputError("config file does not exist", file=path)
    data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("preset", path.stem)
    pairs = [parse_override(o) for o in overrides] if isinstance(overrides, list) else list((overrides or {}).items())
    for key, value in pairs:
        _set_dotted(data, key, value)
    try:
        return SailConfig.model_validate(data)
    except ValueError as exc:
        raise InputError(f"invalid configuration: {exc}", file=path) from exc
