"""The ``sail-loop`` flow: SAIL (Algorithm 1 of the paper) as a Prefect pipeline.

Supports
    SD1.5 and SDXL (``sd15``/``sdxl`` presets: full fine-tuning or LoRA, one GPU or many, generation
    and ranking sharded over a pool's GPU workers), the embedded world on a CPU (``world``), RealAlign
    real-image anchors as a third pair source (``real.*``, ``mixup.real_*``), any config file.
Assumes
    Human seed pairs in the Pick-a-Pic v2 schema (``seed_data.pairs``; ties and unlabelled rows are
    dropped), a prompt pool (the seed data's other captions or ``prompts.files``), held-out
    evaluation prompts (``eval.prompts``), and the model as a Hub id or a local diffusers folder.
Produces
    ``<runs_dir>/<run_name>/``: one keyed directory per stage (Parquet tables, safetensors latents and
    models) with its record beside it, ``<report_dir>/`` (metrics table and plot, sample grids,
    the config, the lineage of models), ``export/`` (the chosen model as a folder diffusers loads, with
    its model card; ``export.*`` settings) and, in the Prefect UI, one ``round-i`` subflow per round,
    progress artifacts and a metrics table.
Resumes
    Rerun with the same ``run_name``: every finished stage returns ``Cached``, an interrupted
    generation or ranking continues from its first unfinished shard, training from its last step
    checkpoint; a changed setting, input or stage code reruns exactly what depends on it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, tags
from pydantic import BaseModel

from sail_core.config import SailConfig, load_config
from sail_core.errors import InputError
from sail_core.evaluation.run_report import SIDE_BY_SIDE_PROMPTS
from sail_core.preflight import preflight
from sail_core.run.layout import check_name
from sail_core.run.lineage import Lineage, ModelRef, base_model
from sail_core.run.records import (
    CandidatesRecord,
    EvalRecord,
    MixRecord,
    PairsRecord,
    PromptsRecord,
    RealRecord,
    SeedRecord,
)
from sail_core.stages import (
    GENERATE,
    MIX,
    PROMPTS,
    RANK,
    REAL,
    SEED,
    GenerateInputs,
    MixInputs,
    PromptsInputs,
    RankInputs,
    real_generation_config,
)
from tasks.artifacts import (
    export_snippet,
    publish_comparison,
    publish_export,
    publish_metrics,
    publish_samples,
)
from tasks.library_logs import forward_library_logs
from tasks.run import (
    PipelineRun,
    enter_deployment_workdir,
    hold_run,
    refuse,
    run_location,
    tag_flow_run,
    warn_about_workers,
)


def resolve_config(preset: str, config_file: str | None, rounds: int | None,
                   overrides: dict[str, Any] | None) -> SailConfig:
    values = dict(overrides or {})
    if rounds is not None:
        values["rounds"] = rounds
    return load_config(config_file or preset, values)


class RoundResult(BaseModel):
    prompts: PromptsRecord | None = None
    candidates: CandidatesRecord | None = None
    pairs: PairsRecord | None = None
    real_candidates: CandidatesRecord | None = None
    mixed: MixRecord
    model: ModelRef
    evaluation: EvalRecord


@flow(name="sail-round", flow_run_name="{run.run_name}-round-{round_index:02d}", persist_result=False,
      result_serializer="json")
def sail_round(run: PipelineRun, round_index: int, lineage: Lineage, seed: SeedRecord | None, real: RealRecord | None,
               earlier: list[PromptsRecord], baseline: EvalRecord) -> RoundResult:
    """One round i: generate N candidates per new prompt with ε^i, rank them with the implicit reward
    against the judge's reference, mix α self pairs with the human seed pairs, DPO ε^i → ε^{i+1}
    (ε^i as init and reference), evaluate. RealAlign anchors join the mix when configured."""
    config = run.config
    policy = lineage.policy(round_index)
    prompts = candidates = pairs = real_candidates = None
    if config.mixup.alpha > 0:
        prompts = run.stage(PROMPTS, PromptsInputs(round_index=round_index, seed=seed, earlier=tuple(earlier)))
        run.log("round %d: %d prompts from a pool of %d (%d prompts dropped because the seed set has them, "
                "%d as duplicates)", round_index, prompts.n_prompts, prompts.n_pool, prompts.n_dropped_in_seed,
                prompts.n_dropped_duplicates)
        generation = GenerateInputs(prompts=prompts, policy=policy)
        ranking = RankInputs(generation=generation, judge=lineage.judge(config.reward.reference, round_index))
        candidates, pairs = run.sharded((GENERATE, generation), (RANK, ranking))
        run.log("round %d: %d self pairs, mean p(win) %.3f", round_index, pairs.n_pairs, pairs.mean_p_win)
    if config.mixup.real_generated > 0:  # RealAlign: the current model's samples for the real captions
        real_candidates = run.stage(GENERATE, GenerateInputs(prompts=real.prompts_record(round_index), policy=policy),
                                    config=real_generation_config(config, round_index))
    mixed = run.stage(MIX, MixInputs(round_index=round_index, seed=seed, pairs=pairs, real=real,
                                     real_candidates=real_candidates))
    run.log("round %d mixed set: %s", round_index, mixed.counts)
    model = run.train(round_index, mixed.mixed, init=policy)
    evaluation = run.evaluate(model, f"round-{round_index:02d}", baseline)
    return RoundResult(prompts=prompts, candidates=candidates, pairs=pairs, real_candidates=real_candidates,
                       mixed=mixed, model=model, evaluation=evaluation)


# Nothing of a run is pickled: results are not persisted (the run directory is the cache), and the exception of
# a failed run, which Prefect always writes to its result storage, is written as JSON (type and message).
@flow(name="sail-loop", flow_run_name="{run_name}", log_prints=True, persist_result=False, result_serializer="json")
def sail_loop(
    preset: str = "world",
    config_file: str | None = None,
    run_name: str = "default",
    rounds: int | None = None,
    overrides: dict[str, Any] | None = None,
    runs_dir: str = "runs",
    report_dir: str = "report",
) -> dict[str, Any]:
    """Run SAIL: iteration 0 on the human seed pairs, then self-ranked rounds, each evaluated.

    Args:
        preset: A shipped preset (world, world-realalign, sd15, sdxl), used when no config_file is given.
        config_file: A YAML config file (relative to the run's working directory) instead of a preset.
        run_name: The run's folder under runs_dir. Rerun with the same name to resume: finished stages are Cached.
        rounds: Self-ranked rounds after iteration 0 (default: the config's).
        overrides: Dotted config fields and their values, e.g. {"reward.k_draws": 4, "runtime.shard_workers": 2}.
        runs_dir: Where runs live: a directory (relative paths are resolved in the run's working directory,
            SAIL_WORKDIR on the worker or the checkout prefect deploy ran in) or an s3:// URL.
        report_dir: The folder inside the run that receives the metrics table, plot and sample grids.

    The run directory is locked while the flow works in it (two runs of one name never run at once:
    ``sail_core.run.lock``). Before any stage, the preflight (``sail_core.preflight``) checks that the
    model, every data path, the device and the run directory are there; its problems fail the run at
    once, one log line each, never retried.
    """
    forward_library_logs()  # the library's warnings (a damaged file passed over, a repair) on the run's page
    # tagged first, so that a run that cannot start is found by its run: tag too
    with tags(*tag_flow_run(run_name)):
        try:
            workdir = enter_deployment_workdir()  # a bad SAIL_WORKDIR is one line too, not a traceback
            # a name that becomes a path is one component (a deployment's parameters are not trusted either)
            check_name(report_dir, "report folder name", "report_dir")
            config = resolve_config(preset, config_file, rounds, overrides)
            # a missing file, device or permission fails here, in seconds, not stages later
            preflight(config, run_location(runs_dir, run_name))
            warn_about_workers(config)
        except InputError as exc:
            return refuse(exc)
        with hold_run(runs_dir, run_name) as took_over:
            run = PipelineRun.open(config, runs_dir, run_name)
            if workdir is not None:
                run.log("working directory %s (relative paths are resolved there)", workdir)
            if took_over:
                run.log("took over the lock of %s, whose process no longer holds it", took_over)
            return _sail(run, report_dir)


def _sail(run: PipelineRun, report_dir: str) -> dict[str, Any]:
    """Algorithm 1: iteration 0 on the human seed, then the rounds; the metrics table after every evaluation."""
    config = run.config
    run.log("run %s in %s (%s preset, %d rounds)", run.run_name, run.location, config.preset, config.rounds)

    lineage = Lineage.start(base_model(config))
    baseline = run.evaluate(lineage.base, "base")
    evaluations, evaluated = [baseline], [lineage.base]
    publish_samples(run.run_name, baseline, run.run_dir, run.grid_prompts(baseline))
    publish_metrics(run.run_name, evaluations)
    seed = None
    if config.seed_data.pairs:  # iteration 0: Diffusion-DPO on the human seed pairs, from the base
        seed = run.stage(SEED, SEED.inputs())
        run.log("seed set: %d pairs (%d ties and %d unlabelled rows dropped), %d prompts left for the rounds "
                "(%d captions dropped because the seed set has their prompt, %d as duplicates)", seed.n_pairs,
                seed.n_ties, seed.n_unlabelled, seed.n_pool, seed.n_pool_in_seed, seed.n_pool_duplicates)
        lineage = lineage.then(run.train(0, seed.pairs, init=lineage.base))
        evaluations.append(run.evaluate(lineage.latest, "round-00", baseline))
        evaluated.append(lineage.latest)
        publish_samples(run.run_name, evaluations[-1], run.run_dir, run.grid_prompts(evaluations[-1]))
        publish_metrics(run.run_name, evaluations)
    else:  # no human seed (e.g. pure RealAlign): the rounds start from the pretrained model
        lineage = lineage.then(lineage.base)
    real = run.stage(REAL, REAL.inputs()) if config.mixup.real_generated or config.mixup.real_perturbed else None
    rounds_done: list[RoundResult] = []
    for round_index in range(1, config.rounds + 1):
        earlier = [r.prompts for r in rounds_done if r.prompts is not None]
        result = sail_round(run, round_index, lineage, seed, real, earlier, baseline)
        rounds_done.append(result)
        lineage = lineage.then(result.model)
        evaluations.append(result.evaluation)
        evaluated.append(result.model)
        # in the parent run, beside the others
        publish_samples(run.run_name, result.evaluation, run.run_dir, run.grid_prompts(result.evaluation))
        publish_metrics(run.run_name, evaluations)
    report = run.report(report_dir, evaluations, evaluated)
    print((report / "metrics.txt").read_text())
    if (report / "samples.png").exists():
        publish_comparison(run.run_name, report / "samples.png", [e.label for e in evaluations],
                           run.grid_prompts(baseline, limit=SIDE_BY_SIDE_PROMPTS))
    exported = None
    # the chosen model out of the run: a folder diffusers loads, with its card (once something was trained)
    if config.export.enabled and len(evaluated) > 1:
        record = run.export(evaluations, evaluated)
        location = run.export_location(record)
        publish_export(run.run_name, record, location, run.location)
        run.log("exported %s (%s) to %s", record.label, record.chosen_by, location)
        exported = {"folder": location, "label": record.label, "kind": record.kind, "chosen_by": record.chosen_by,
                    "snippet": export_snippet(record, location)}
    return {
        "run_dir": str(run.layout.root), "report": str(report), "export": exported,
        "seed": seed.model_dump(mode="json") if seed else None,
        "models": [{"label": e.label, "checkpoint": m.checkpoint.model_dump(mode="json"), "identity": m.identity}
                   for e, m in zip(evaluations, evaluated)],
        "evaluations": [e.model_dump(mode="json") for e in evaluations],
        "rounds": [r.model_dump(mode="json") for r in rounds_done],
    }
