"""The ``sail-loop`` flow: seed Diffusion-DPO, then rounds of generate → self-reward → mixup → DPO → evaluate.

Every stage is a cached task keyed by its settings and inputs, writing into the run directory.
Rerunning a run after a failure skips every finished stage (state ``Cached``) and resumes inside the
interrupted one; changing a setting reruns exactly what depends on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from pydantic import BaseModel

from flows.sail_shard import dispatch_shards
from sail_core.config import SailConfig, load_config
from sail_core.evaluation.run_report import format_table, metric_names, plot_metrics, side_by_side, write_metrics
from sail_core.io.atomic import write_text
from sail_core.io.remote import RunStore
from sail_core.stages import keys
from sail_core.stages.bookkeeping import is_finished, manifest, stage_dir
from sail_core.stages.generate import shard_count
from sail_core.stages.judge import judge_reference
from sail_core.stages.real import real_files, real_generation_config
from sail_core.stages.records import (
    CandidatesRecord,
    EvalRecord,
    MixRecord,
    PairsRecord,
    PromptsRecord,
    RealRecord,
    SeedRecord,
)
from sail_core.stages.seed import seed_files
from tasks.artifacts import publish_metrics, publish_samples
from tasks.caching import run_stage
from tasks.context import RunContext
from tasks.stages import (
    evaluate_stage,
    generate_stage,
    mix_stage,
    prompts_stage,
    rank_stage,
    real_stage,
    seed_stage,
    train_stage,
)


def resolve_config(preset: str, config_file: str | None, rounds: int | None,
                   overrides: dict[str, Any] | None) -> SailConfig:
    values = dict(overrides or {})
    if rounds is not None:
        values["rounds"] = rounds
    return load_config(config_file or preset, values)


class _Run:
    """The flow's view of one run: its context, its store, and how a stage is called and published."""

    def __init__(self, ctx: RunContext, store_location: str, run_name: str) -> None:
        self.ctx, self.run_name = ctx, run_name
        self.store = RunStore(store_location, local=ctx.run_dir)
        self.config = ctx.config

    def stage(self, task, key: keys.StageKey, ctx: RunContext | None = None, **inputs):
        record = run_stage(task, ctx or self.ctx, key, **inputs)
        if record is not None:
            self.store.push(stage_dir(self.ctx.layout, key))
            self.store.push(stage_dir(self.ctx.layout, key).with_suffix(".json"))
        return record

    def fan_out(self, key: keys.StageKey, prompts: PromptsRecord, inputs: dict[str, Any]) -> None:
        """Spread a stage's shards over the pool's GPU workers when configured (and not already done)."""
        workers = self.config.runtime.shard_workers
        if workers == 0 or is_finished(self.ctx.layout, key):
            return
        payload = {k: v.model_dump(mode="json") for k, v in inputs.items()}
        dispatch_shards(self.store.location, self.config, key, shard_count(self.config, prompts), workers, payload)
        self.store.pull()

    def evaluate(self, model: keys.ModelRef, label: str, baseline: EvalRecord | None) -> EvalRecord:
        record = self.stage(evaluate_stage, keys.evaluate_key(self.config, model, label, baseline),
                            model=model, label=label, baseline=baseline)
        publish_samples(self.run_name, record, self.ctx.run_dir)
        return record

    def train(self, pairs_artifact, init: keys.ModelRef, round_index: int) -> keys.ModelRef:
        key = keys.train_key(self.config, pairs_artifact.sha256, init, round_index)
        record = self.stage(train_stage, key, pairs=pairs_artifact, init=init, round_index=round_index)
        get_run_logger().info("round %d DPO: %d steps, final %s", round_index, record.steps,
                              {k: round(v, 4) for k, v in record.final_metrics.items()})
        return keys.trained_model(record, init)


class RoundResult(BaseModel):
    prompts: PromptsRecord | None = None
    candidates: CandidatesRecord | None = None
    pairs: PairsRecord | None = None
    real_candidates: CandidatesRecord | None = None
    mixed: MixRecord
    model: keys.ModelRef
    evaluation: EvalRecord


def _self_pairs(run: _Run, round_index: int, seed: SeedRecord | None, earlier: list[PromptsRecord],
                models: list[keys.ModelRef]) -> tuple[PromptsRecord, CandidatesRecord, PairsRecord]:
    """Generate N candidates for the round's new prompts and rank them with the implicit self-reward."""
    config = run.config
    policy = models[round_index]
    judge = judge_reference(config.reward.reference, round_index, models)
    prompts = run.stage(prompts_stage, keys.prompts_key(config, seed, earlier, round_index),
                        seed=seed, earlier=earlier, round_index=round_index)
    generate_key = keys.generate_key(config, prompts, policy)
    run.fan_out(generate_key, prompts, {"prompts": prompts, "policy": policy.checkpoint})
    candidates = run.stage(generate_stage, generate_key, prompts=prompts, policy=policy)
    rank_key = keys.rank_key(config, candidates, policy, judge)
    run.fan_out(rank_key, prompts, {"prompts": prompts, "policy": policy.checkpoint, "candidates": candidates,
                                    "judge": judge.checkpoint})
    pairs = run.stage(rank_stage, rank_key, prompts=prompts, candidates=candidates, policy=policy, judge=judge)
    get_run_logger().info("round %d: %d self pairs, mean p(win) %.3f", round_index, pairs.n_pairs, pairs.mean_p_win)
    return prompts, candidates, pairs


def _real_negatives(run: _Run, round_index: int, real: RealRecord, policy: keys.ModelRef) -> CandidatesRecord:
    """The current model's samples for the real images' captions (RealAlign's generated negatives)."""
    config = real_generation_config(run.config, round_index)
    prompts = real.prompts_record(round_index)
    return run.stage(generate_stage, keys.generate_key(config, prompts, policy),
                     ctx=run.ctx.model_copy(update={"config": config}), prompts=prompts, policy=policy)


@flow(name="sail-round", flow_run_name="round-{round_index}")
def sail_round(ctx: RunContext, store_location: str, run_name: str, round_index: int, seed: SeedRecord | None,
               real: RealRecord | None, earlier: list[PromptsRecord], models: list[keys.ModelRef],
               baseline: EvalRecord) -> RoundResult:
    """One round, as a subflow so the UI shows each round's stages together: self-ranked pairs (when
    alpha > 0), real-image anchors (when their fractions are > 0), the mixed set, DPO, evaluation."""
    run = _Run(ctx, store_location, run_name)
    config = run.config
    prompts = candidates = pairs = real_candidates = None
    if config.mixup.alpha > 0:
        prompts, candidates, pairs = _self_pairs(run, round_index, seed, earlier, models)
    if config.mixup.real_generated > 0:
        real_candidates = _real_negatives(run, round_index, real, models[round_index])
    key = keys.mix_key(config, seed, pairs, real=real, real_candidates=real_candidates, round_index=round_index)
    mixed = run.stage(mix_stage, key, round_index=round_index, seed=seed, pairs=pairs, real=real,
                      real_candidates=real_candidates)
    get_run_logger().info("round %d mixed set: %s", round_index, mixed.counts)
    model = run.train(mixed.mixed, models[round_index], round_index)
    evaluation = run.evaluate(model, f"round-{round_index:02d}", baseline)
    return RoundResult(prompts=prompts, candidates=candidates, pairs=pairs, real_candidates=real_candidates,
                       mixed=mixed, model=model, evaluation=evaluation)


@flow(name="sail-loop", log_prints=True)
def sail_loop(
    preset: str = "world",
    config_file: str | None = None,
    run_name: str = "default",
    rounds: int | None = None,
    overrides: dict[str, Any] | None = None,
    runs_dir: str = "runs",
    report_dir: str = "report",
    fault: str | None = None,
) -> dict[str, Any]:
    """Run SAIL. ``overrides`` maps dotted config fields to values (``{"reward.k_draws": 4}``);
    ``runs_dir`` may be an fsspec URL; ``report_dir`` (inside the run) receives the metrics table,
    plot and sample grid, so several variants can share one run directory (and its cached stages);
    ``fault`` injects a failure for tests (see ``RunContext.fault``)."""
    config = resolve_config(preset, config_file, rounds, overrides)
    location = f"{runs_dir.rstrip('/')}/{run_name}"
    store = RunStore(location)
    store.pull()
    ctx = RunContext(run_dir=str(store.local), config=config, fault=fault)
    run = _Run(ctx, location, run_name)
    logger = get_run_logger()
    logger.info("run %s in %s (%s preset, %d rounds)", run_name, store.location, config.preset, config.rounds)

    base = keys.base_model(config)
    base_eval = run.evaluate(base, "base", None)
    models, evals = [base], [base_eval]
    evaluated = [base]  # the model behind each entry of evals
    seed = None
    if config.seed_data.pairs:
        seed = run.stage(seed_stage, keys.seed_key(config, [str(f) for f in seed_files(config)]))
        logger.info("seed set: %d pairs (%d ties dropped), %d prompts left for the rounds",
                    seed.n_pairs, seed.n_ties, seed.n_pool)
        models.append(run.train(seed.pairs, base, 0))
        evals.append(run.evaluate(models[1], "round-00", base_eval))
        evaluated.append(models[1])
    else:  # no human seed (e.g. pure RealAlign): the rounds start from the pretrained model
        models.append(base)
    real = None
    if config.mixup.real_generated > 0 or config.mixup.real_perturbed > 0:
        real = run.stage(real_stage, keys.real_key(config, real_files(config)))
    rounds: list[RoundResult] = []
    for round_index in range(1, config.rounds + 1):
        result = sail_round(ctx, location, run_name, round_index, seed, real,
                            [r.prompts for r in rounds if r.prompts is not None], models, base_eval)
        rounds.append(result)
        models.append(result.model)
        evals.append(result.evaluation)
        evaluated.append(result.model)
        publish_metrics(run_name, evals)
    publish_metrics(run_name, evals)
    return _finish(run, evals, report_dir, seed, evaluated, rounds)


def _finish(run: _Run, evals: list[EvalRecord], report_dir: str, seed: SeedRecord | None, models: list[keys.ModelRef],
            rounds: list[RoundResult]) -> dict[str, Any]:
    root = Path(run.ctx.run_dir)
    report = root / report_dir
    write_metrics(evals, report / "metrics.parquet")
    if metric_names(evals):
        plot_metrics(evals, report / "metrics.png")
    side_by_side(evals, root, report / "samples.png")
    table = format_table(evals)
    write_text(report / "metrics.txt", table + "\n", overwrite=True)
    write_text(report / "config.json", json.dumps(run.config.model_dump(mode="json"), indent=2), overwrite=True)
    write_text(root / "manifest.json", json.dumps({"stages": manifest(run.ctx.layout)}, indent=2), overwrite=True)
    run.store.push(report)
    run.store.push(root / "manifest.json")
    print(table)
    return {
        "run_dir": str(root), "report": str(report), "seed": seed.model_dump(mode="json") if seed else None,
        "models": [{"label": e.label, "checkpoint": m.checkpoint.model_dump(mode="json"), "identity": m.identity}
                   for e, m in zip(evals, models)],
        "evaluations": [e.model_dump(mode="json") for e in evals],
        "rounds": [r.model_dump(mode="json") for r in rounds],
    }
