"""The SAIL stages as Prefect tasks. Each one checks for an injected fault, runs the ``sail_core``
stage into its keyed directory with progress reporting, and records the finished stage."""

from __future__ import annotations

from sail_core.stages.bookkeeping import record_finished, stage_dir
from sail_core.stages.evaluate import evaluate_model
from sail_core.stages.generate import generate_candidates, prepare_prompts
from sail_core.stages.keys import ModelRef, StageKey
from sail_core.stages.layout import Artifact
from sail_core.stages.mix import mix_round
from sail_core.stages.rank import rank_candidates
from sail_core.stages.real import prepare_real, real_generated_pairs, real_perturbed_pairs
from sail_core.stages.records import (
    CandidatesRecord,
    EvalRecord,
    MixRecord,
    ModelRecord,
    PairsRecord,
    PromptsRecord,
    RealRecord,
    SeedRecord,
)
from sail_core.stages.seed import prepare_seed
from sail_core.stages.train import train_model
from tasks.caching import stage_task
from tasks.context import RunContext
from tasks.progress import StageProgress


def _begin(ctx: RunContext, key: StageKey):
    ctx.check_fault(key.stage, key.group)
    out = stage_dir(ctx.layout, key)
    out.mkdir(parents=True, exist_ok=True)
    return out, StageProgress(f"progress-{key.stage}-{key.group}", f"{key.stage} {key.group}",
                              ctx.kill_after(key.stage, key.group))


@stage_task("seed")
def seed_stage(ctx: RunContext, key: StageKey) -> SeedRecord:
    out, progress = _begin(ctx, key)
    with progress:
        record = prepare_seed(ctx.config, ctx.bundle(), ctx.layout, out, progress)
    record_finished(ctx.layout, key, record)
    return record


@stage_task("real")
def real_stage(ctx: RunContext, key: StageKey) -> RealRecord:
    out, progress = _begin(ctx, key)
    with progress:
        record = prepare_real(ctx.config, ctx.bundle(), ctx.layout, out, progress)
    record_finished(ctx.layout, key, record)
    return record


@stage_task("prompts")
def prompts_stage(ctx: RunContext, key: StageKey, seed: SeedRecord, earlier: list[PromptsRecord],
                  round_index: int) -> PromptsRecord:
    out, progress = _begin(ctx, key)
    with progress:
        record = prepare_prompts(ctx.config, ctx.bundle(), ctx.layout, seed, earlier, round_index, out)
    record_finished(ctx.layout, key, record)
    return record


@stage_task("generate")
def generate_stage(ctx: RunContext, key: StageKey, prompts: PromptsRecord, policy: ModelRef,
                   shards: list[int] | None = None) -> CandidatesRecord | None:
    out, progress = _begin(ctx, key)
    with progress:
        record = generate_candidates(ctx.config, ctx.bundle(), ctx.layout, prompts, policy.checkpoint, out,
                                     shards, progress)
    if record is not None:
        record_finished(ctx.layout, key, record)
    return record


@stage_task("rank")
def rank_stage(ctx: RunContext, key: StageKey, prompts: PromptsRecord, candidates: CandidatesRecord,
               policy: ModelRef, judge: ModelRef, shards: list[int] | None = None) -> PairsRecord | None:
    out, progress = _begin(ctx, key)
    with progress:
        record = rank_candidates(ctx.config, ctx.bundle(), ctx.layout, prompts, candidates, policy.checkpoint,
                                 judge.checkpoint, out, shards, progress)
    if record is not None:
        record_finished(ctx.layout, key, record)
    return record


@stage_task("mix")
def mix_stage(ctx: RunContext, key: StageKey, round_index: int, seed: SeedRecord | None = None,
              pairs: PairsRecord | None = None, real: RealRecord | None = None,
              real_candidates: CandidatesRecord | None = None) -> MixRecord:
    out, _ = _begin(ctx, key)
    mixup = ctx.config.mixup
    generated = real_generated_pairs(ctx.layout, real, real_candidates) if mixup.real_generated > 0 else None
    perturbed = real_perturbed_pairs(ctx.layout, real) if mixup.real_perturbed > 0 else None
    record = mix_round(ctx.config, ctx.layout, seed, pairs, out, real_generated=generated, real_perturbed=perturbed,
                       round_index=round_index)
    record_finished(ctx.layout, key, record)
    return record


@stage_task("train", retries=1)
def train_stage(ctx: RunContext, key: StageKey, pairs: Artifact, init: ModelRef, round_index: int) -> ModelRecord:
    out, progress = _begin(ctx, key)
    with progress:
        if ctx.config.runtime.train_processes > 1:
            from tasks.launch import train_in_subprocesses

            record = train_in_subprocesses(ctx, key, pairs, init, round_index, out)
        else:
            record = train_model(ctx.config, ctx.bundle(), ctx.layout, pairs, init.checkpoint, round_index, out,
                                 progress.step)
    record_finished(ctx.layout, key, record)
    return record


@stage_task("evaluate")
def evaluate_stage(ctx: RunContext, key: StageKey, model: ModelRef, label: str,
                   baseline: EvalRecord | None = None) -> EvalRecord:
    out, progress = _begin(ctx, key)
    with progress:
        record = evaluate_model(ctx.config, ctx.bundle(), ctx.layout, model.checkpoint, label, out, baseline,
                                progress)
    record_finished(ctx.layout, key, record)
    return record
