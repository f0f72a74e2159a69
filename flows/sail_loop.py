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

from sail_core.config import SailConfig, load_config
from sail_core.evaluation.run_report import format_table, metric_names, plot_metrics, side_by_side, write_metrics
from sail_core.io.atomic import write_text
from sail_core.io.remote import RunStore
from sail_core.stages import keys
from sail_core.stages.bookkeeping import manifest, stage_dir
from sail_core.stages.judge import judge_reference
from sail_core.stages.records import (
    CandidatesRecord,
    EvalRecord,
    MixRecord,
    ModelRecord,
    PairsRecord,
    PromptsRecord,
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

    def stage(self, task, key: keys.StageKey, record_type: type, **inputs):
        record = run_stage(task, self.ctx, key, record_type, **inputs)
        if record is not None:
            self.store.push(stage_dir(self.ctx.layout, key))
            self.store.push(stage_dir(self.ctx.layout, key).with_suffix(".json"))
        return record

    def evaluate(self, model: keys.ModelRef, label: str, baseline: EvalRecord | None) -> EvalRecord:
        record = self.stage(evaluate_stage, keys.evaluate_key(self.config, model, label, baseline), EvalRecord,
                            model=model, label=label, baseline=baseline)
        publish_samples(self.run_name, record, self.ctx.run_dir)
        return record

    def train(self, pairs_artifact, init: keys.ModelRef, round_index: int) -> keys.ModelRef:
        key = keys.train_key(self.config, pairs_artifact.sha256, init, round_index)
        record = self.stage(train_stage, key, ModelRecord, pairs=pairs_artifact, init=init, round_index=round_index)
        get_run_logger().info("round %d DPO: %d steps, final %s", round_index, record.steps,
                              {k: round(v, 4) for k, v in record.final_metrics.items()})
        return keys.trained_model(record, init)


@flow(name="sail-round", flow_run_name="round-{round_index}")
def sail_round(ctx: RunContext, store_location: str, run_name: str, round_index: int, seed: SeedRecord,
               earlier: list[PromptsRecord], models: list[keys.ModelRef],
               baseline: EvalRecord) -> tuple[PromptsRecord, keys.ModelRef, EvalRecord]:
    """One SAIL round, as a subflow so the UI shows each round's stages together."""
    run = _Run(ctx, store_location, run_name)
    config = run.config
    logger = get_run_logger()
    policy = models[round_index]
    judge = judge_reference(config.reward.reference, round_index, models)
    prompts = run.stage(prompts_stage, keys.prompts_key(config, seed, earlier, round_index), PromptsRecord,
                        seed=seed, earlier=earlier, round_index=round_index)
    candidates = run.stage(generate_stage, keys.generate_key(config, prompts, policy), CandidatesRecord,
                           prompts=prompts, policy=policy)
    pairs = run.stage(rank_stage, keys.rank_key(config, candidates, policy, judge), PairsRecord,
                      prompts=prompts, candidates=candidates, policy=policy, judge=judge)
    logger.info("round %d: %d self pairs, mean p(win) %.3f", round_index, pairs.n_pairs, pairs.mean_p_win)
    mixed = run.stage(mix_stage, keys.mix_key(config, seed, pairs), MixRecord, seed=seed, pairs=pairs)
    logger.info("round %d mixed set: %s", round_index, mixed.counts)
    model = run.train(mixed.mixed, policy, round_index)
    return prompts, model, run.evaluate(model, f"round-{round_index:02d}", baseline)


@flow(name="sail-loop", log_prints=True)
def sail_loop(
    preset: str = "world",
    config_file: str | None = None,
    run_name: str = "default",
    rounds: int | None = None,
    overrides: dict[str, Any] | None = None,
    runs_dir: str = "runs",
    fault: str | None = None,
) -> dict[str, Any]:
    """Run SAIL. ``overrides`` maps dotted config fields to values (``{"reward.k_draws": 4}``);
    ``runs_dir`` may be an fsspec URL; ``fault`` ("<stage>:<group>") injects a failure for tests."""
    config = resolve_config(preset, config_file, rounds, overrides)
    location = f"{runs_dir.rstrip('/')}/{run_name}"
    store = RunStore(location)
    store.pull()
    ctx = RunContext(run_dir=str(store.local), config=config, fault=fault)
    run = _Run(ctx, location, run_name)
    logger = get_run_logger()
    logger.info("run %s in %s (%s preset, %d rounds)", run_name, store.location, config.preset, config.rounds)

    seed = run.stage(seed_stage, keys.seed_key(config, [str(f) for f in seed_files(config)]), SeedRecord)
    logger.info("seed set: %d pairs (%d ties dropped), %d prompts left for the rounds",
                seed.n_pairs, seed.n_ties, seed.n_pool)
    base = keys.base_model(config)
    base_eval = run.evaluate(base, "base", None)
    models = [base, run.train(seed.pairs, base, 0)]
    evals = [base_eval, run.evaluate(models[1], "round-00", base_eval)]
    earlier: list[PromptsRecord] = []
    for round_index in range(1, config.rounds + 1):
        prompts, model, evaluation = sail_round(ctx, location, run_name, round_index, seed, earlier, models,
                                                base_eval)
        earlier.append(prompts)
        models.append(model)
        evals.append(evaluation)
        publish_metrics(run_name, evals)
    publish_metrics(run_name, evals)
    return _finish(run, evals)


def _finish(run: _Run, evals: list[EvalRecord]) -> dict[str, Any]:
    root = Path(run.ctx.run_dir)
    report = root / "report"
    write_metrics(evals, report / "metrics.parquet")
    if metric_names(evals):
        plot_metrics(evals, report / "metrics.png")
    side_by_side(evals, root, report / "samples.png")
    table = format_table(evals)
    write_text(report / "metrics.txt", table + "\n", overwrite=True)
    write_text(root / "manifest.json", json.dumps({"config": run.config.model_dump(mode="json"),
                                                   "stages": manifest(run.ctx.layout)}, indent=2), overwrite=True)
    run.store.push(report)
    run.store.push(root / "manifest.json")
    print(table)
    return {"run_dir": str(root), "report": str(report), "metrics": [e.model_dump(mode="json") for e in evals]}
