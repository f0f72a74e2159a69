"""Which settings and inputs each stage depends on: the stage keys.

A key names one execution of a stage (its output directory, and the orchestration's cache key). It
hashes the stage, its group (round or label), the config sections that change its output and the
content hashes of its inputs, so changing one setting re-runs exactly the stages downstream of it.
User data files too large to hash (Pick-a-Pic is 335 GB) enter by path, size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sail_core.config import SailConfig
from sail_core.models.lineage import UnetCheckpoint
from sail_core.stages.layout import stage_key
from sail_core.stages.records import (
    CandidatesRecord,
    EvalRecord,
    ModelRecord,
    PairsRecord,
    PromptsRecord,
    RealRecord,
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
    settings = {"model": _model_settings(config), "seed_data": config.seed_data.model_dump(mode="json")}
    return StageKey("seed", "seed", settings, tuple(file_fingerprint(f) for f in files))


def prompts_key(config: SailConfig, seed: SeedRecord | None, earlier: Sequence[PromptsRecord],
                round_index: int) -> StageKey:
    files = tuple(file_fingerprint(f) for f in config.prompts.files)
    seed_inputs = (seed.pairs.sha256, seed.pool.sha256) if seed else ("no-human",)
    return StageKey("prompts", f"round-{round_index:02d}",
                    {"model": _model_settings(config), "prompts": config.prompts.model_dump(mode="json")},
                    (*seed_inputs, *files, *(r.prompts.sha256 for r in earlier)))


def generate_key(config: SailConfig, prompts: PromptsRecord, policy: ModelRef) -> StageKey:
    return StageKey("generate", f"round-{prompts.round:02d}",
                    {"model": _model_settings(config), "generate": config.generate.model_dump(mode="json")},
                    (prompts.prompts.sha256, prompts.conds.sha256, policy.identity))


def rank_key(config: SailConfig, candidates: CandidatesRecord, policy: ModelRef, judge: ModelRef) -> StageKey:
    return StageKey("rank", f"round-{candidates.round:02d}",
                    {"model": _model_settings(config), "reward": config.reward.model_dump(mode="json"),
                     "prompts_per_shard": config.generate.prompts_per_shard},
                    (candidates.candidates.sha256, policy.identity, judge.identity))


def mix_key(config: SailConfig, seed: SeedRecord | None, pairs: PairsRecord | None, *,
            real: RealRecord | None = None, real_candidates: CandidatesRecord | None = None,
            round_index: int | None = None) -> StageKey:
    """``real``/``real_candidates``: the RealAlign sources (real ≻ perturbed pairs; the candidates generated
    for the real captions this round), given when their fractions are positive."""
    mixup = config.mixup.model_dump(mode="json")
    # RealAlign's fractions at their default 0 stay out of the key, so SAIL runs keep their cache keys
    for name in ("real_generated", "real_perturbed"):
        if not mixup[name]:
            del mixup[name]
    settings: dict[str, Any] = {"mixup": mixup}
    inputs = [seed.pairs.sha256 if seed else "no-human", pairs.pairs.sha256 if pairs else "no-self"]
    if real is not None:
        # generated_per_image decides which candidates become pairs: in the settings
        settings["real"] = config.real.model_dump(mode="json")
        inputs += [real.anchors.sha256, real.perturbed_pairs.sha256,
                   real_candidates.candidates.sha256 if real_candidates else "no-real-generated"]
    round_index = pairs.round if pairs is not None else round_index
    if round_index is None:
        raise ValueError("mix_key needs round_index when no self pairs are given")
    return StageKey("mix", f"round-{round_index:02d}", settings, tuple(inputs))


def real_key(config: SailConfig, files: Sequence[str]) -> StageKey:
    """RealAlign's real images: ``files`` = ``sail_core.stages.real.real_files(config)``."""
    return StageKey("real", "real", {"model": _model_settings(config), "real": config.real.model_dump(mode="json")},
                    tuple(file_fingerprint(f) for f in files))


def train_key(config: SailConfig, pairs_sha256: str, init: ModelRef, round_index: int) -> StageKey:
    train = config.seed_train if round_index == 0 else config.round_train
    model = config.model.model_dump(mode="json")
    return StageKey("train", f"round-{round_index:02d}",
                    {"model": _model_settings(config), "train_mode": model["train_mode"], "lora": model["lora"],
                     "reference_dtype": model["reference_dtype"], "train": train.model_dump(mode="json"),
                     "processes": config.runtime.train_processes},
                    (pairs_sha256, init.identity))


def eval_prompts_digest(config: SailConfig) -> str:
    """Hash of the evaluation prompts and categories themselves: a ``kind:path`` spec, a folder whose
    files changed, or a renamed copy of the same file are all judged by their content."""
    from sail_core.stages.evaluate import eval_prompts

    return hashlib.sha256(json.dumps(eval_prompts(config)).encode()).hexdigest()


def evaluate_key(config: SailConfig, model: ModelRef, label: str, baseline: EvalRecord | None) -> StageKey:
    return StageKey("evaluate", f"eval-{label}",
                    {"model": _model_settings(config), "eval": config.eval.model_dump(mode="json")},
                    (model.identity, eval_prompts_digest(config),
                     baseline.scores.sha256 if baseline else "no-baseline"))
