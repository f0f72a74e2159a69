"""Which settings and inputs each stage depends on: the stage keys.

A key names one execution of a stage (its output directory, and the orchestration's cache key). It
hashes the stage, its group (round or label), the config sections that change its output and the
content hashes of its inputs, so changing one setting re-runs exactly the stages downstream of it.
User data files too large to hash (Pick-a-Pic is 335 GB) enter by path, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sail_core.config import SailConfig
from sail_core.models.lineage import UnetCheckpoint
from sail_core.stages.layout import stage_key
from sail_core.world.assets import resolve_eval_prompts
from sail_core.stages.records import (
    CandidatesRecord,
    EvalRecord,
    ModelRecord,
    PairsRecord,
    PromptsRecord,
    SeedRecord,
)


@dataclass(frozen=True)
class StageKey:
    stage: str
    group: str
    settings: dict[str, Any]
    inputs: tuple[str, ...]

    @property
    def key(self) -> str:
        return stage_key(self.stage, self.group, self.settings, list(self.inputs))


def _model_settings(config: SailConfig) -> dict[str, Any]:
    """What fixes the frozen parts (codec, text encoders) and the base UNet."""
    model = config.model.model_dump(mode="json")
    return {k: model[k] for k in ("family", "source", "revision", "variant", "vae_source", "codec", "resolution",
                                  "frozen_dtype", "empty_prompt_zeros")}


def file_fingerprint(path: str) -> str:
    stat = os.stat(path)
    return f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}"


@dataclass(frozen=True)
class ModelRef:
    """A model of the run: its checkpoint spec and an identity that changes whenever its weights do."""

    checkpoint: UnetCheckpoint
    identity: str


def base_model(config: SailConfig) -> ModelRef:
    m = config.model
    return ModelRef(UnetCheckpoint(), f"base:{m.source}@{m.revision or ''}:{m.variant or ''}")


def trained_model(record: ModelRecord, init: ModelRef) -> ModelRef:
    digest = hashlib.sha256(f"{init.identity}|{record.weights.sha256}".encode()).hexdigest()[:32]
    return ModelRef(record.checkpoint, f"trained:{digest}")


def seed_key(config: SailConfig, files: Sequence[str]) -> StageKey:
    return StageKey("seed", "seed", {"model": _model_settings(config), "seed_data": config.seed_data.model_dump(mode="json")},
                    tuple(file_fingerprint(f) for f in files))


def prompts_key(config: SailConfig, seed: SeedRecord, earlier: Sequence[PromptsRecord], round_index: int) -> StageKey:
    files = tuple(file_fingerprint(f) for f in config.prompts.files)
    return StageKey("prompts", f"round-{round_index:02d}",
                    {"model": _model_settings(config), "prompts": config.prompts.model_dump(mode="json")},
                    (seed.pairs.sha256, seed.pool.sha256, *files, *(r.prompts.sha256 for r in earlier)))


def generate_key(config: SailConfig, prompts: PromptsRecord, policy: ModelRef) -> StageKey:
    return StageKey("generate", f"round-{prompts.round:02d}",
                    {"model": _model_settings(config), "generate": config.generate.model_dump(mode="json")},
                    (prompts.prompts.sha256, prompts.conds.sha256, policy.identity))


def rank_key(config: SailConfig, candidates: CandidatesRecord, policy: ModelRef, judge: ModelRef) -> StageKey:
    return StageKey("rank", f"round-{candidates.round:02d}",
                    {"model": _model_settings(config), "reward": config.reward.model_dump(mode="json"),
                     "prompts_per_shard": config.generate.prompts_per_shard},
                    (candidates.candidates.sha256, policy.identity, judge.identity))


def mix_key(config: SailConfig, seed: SeedRecord, pairs: PairsRecord) -> StageKey:
    return StageKey("mix", f"round-{pairs.round:02d}", {"mixup": config.mixup.model_dump(mode="json")},
                    (seed.pairs.sha256, pairs.pairs.sha256))


def train_key(config: SailConfig, pairs_sha256: str, init: ModelRef, round_index: int) -> StageKey:
    train = config.seed_train if round_index == 0 else config.round_train
    model = config.model.model_dump(mode="json")
    return StageKey("train", f"round-{round_index:02d}",
                    {"model": _model_settings(config), "train_mode": model["train_mode"], "lora": model["lora"],
                     "reference_dtype": model["reference_dtype"], "train": train.model_dump(mode="json"),
                     "processes": config.runtime.train_processes},
                    (pairs_sha256, init.identity))


def evaluate_key(config: SailConfig, model: ModelRef, label: str, baseline: EvalRecord | None) -> StageKey:
    files = tuple(file_fingerprint(resolve_eval_prompts(f)) for f in config.eval.prompts)
    return StageKey("evaluate", f"eval-{label}",
                    {"model": _model_settings(config), "eval": config.eval.model_dump(mode="json")},
                    (model.identity, *files, baseline.scores.sha256 if baseline else "no-baseline"))
