"""``sail experiment``: run every arm of an experiment spec for every seed, then the analyses, and
write tables (mean ± standard deviation over seeds), plots and the command that made them."""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sail_core.config import SailConfig, load_config
from sail_core.errors import InputError
from sail_core.evaluation.scoring import build_scorers, score_images
from sail_core.experiments.aggregate import markdown_table, results_table, summarize_over_seeds, write_results
from sail_core.experiments.analysis import held_out_human_pairs, selection_agreement, self_reward_accuracy
from sail_core.experiments.checks import check_experiment
from sail_core.experiments.comparisons import (
    differences_markdown,
    model_differences,
    ranking_versus_markdown,
    ranking_versus_reference,
)
from sail_core.experiments.plots import plot_tradeoff, plot_utility
from sail_core.experiments.ranking import ranking_agreement, round_one_candidates
from sail_core.experiments.spec import ExperimentSpec, seed_overrides
from sail_core.io.atomic import write_text
from sail_core.io.tables import read_table, write_table
from sail_core.models.bundle import cached_bundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.run.records import CandidatesRecord, PromptsRecord

METRICS = ("utility", "faithful", "faithfulness", "taste", "utility_win_rate")


def _run_arm(spec: ExperimentSpec, arm_name: str, seed: int, runs_dir: str) -> dict[str, Any]:
    from flows.sail_loop import sail_loop

    arm = spec.arm(arm_name)
    overrides = {**spec.overrides, **seed_overrides(seed), **arm.overrides}
    # a run name is one path component: the experiment's runs live in <runs_dir>/<experiment>/seed-<s>/
    return sail_loop(preset=spec.preset, run_name=_SEED_RUN.format(seed=seed), rounds=arm.rounds,
                     overrides=overrides, runs_dir=f"{runs_dir.rstrip('/')}/{spec.name}",
                     report_dir=f"report-{arm.name}")


_SEED_RUN = "seed-{seed}"
"""The run every arm of one seed shares, under ``<runs_dir>/<experiment>/``."""


def _seed_run_dir(spec: ExperimentSpec, runs_dir: str, seed: int) -> Path:
    return Path(runs_dir) / spec.name / _SEED_RUN.format(seed=seed)


def _metric_rows(arm: str, seed: int, result: dict[str, Any]) -> list[dict]:
    """One row per evaluated model, with its per-image scores' path inside the seed's run directory (the
    paired comparisons read them, also in a later invocation)."""
    return [{"arm": arm, "seed": seed, "model": e["label"], "scores": e["scores"]["path"],
             **{m: e["metrics"].get(m) for m in METRICS}} for e in result["evaluations"]]


def _scores_reader(spec: ExperimentSpec, runs_dir: str) -> Callable[[dict], dict]:
    """Reads a metrics row's per-image scores from the seed's run directory (once per file)."""
    cache: dict[Path, dict] = {}

    def scores(row: dict) -> dict:
        run_dir = _seed_run_dir(spec, runs_dir, row["seed"])
        path = run_dir / row["scores"] if row.get("scores") else run_dir
        if path not in cache:
            if path == run_dir or not path.exists():  # a row of an older invocation, or a deleted run
                raise InputError(f"the scores of {row['arm']}/{row['model']} (seed {row['seed']}) are gone; rerun "
                                 f"`sail experiment ... --arm {row['arm']} --seed {row['seed']}`", file=path)
            cache[path] = read_table(path).to_pydict()
        return cache[path]

    return scores


def _judge(config: SailConfig):
    """The config's evaluation scorers as the analyses' judge, scoring by the first metric (the hidden
    human's utility in the embedded world)."""
    scorers = build_scorers(config.eval.scorers, "cpu", config.eval.scorer_sources, config.eval.scorer_options)
    return lambda images, prompts: score_images(scorers, images, prompts)[METRICS[0]]


def _analyses(spec: ExperimentSpec, seed: int, results: dict[str, dict], rows: list[dict]) -> tuple[list, list]:
    analysis = spec.analysis
    accuracy, agreement = [], []
    any_result = next(iter(results.values()))
    config = load_config(spec.preset, {**spec.overrides, **seed_overrides(seed)})
    bundle = cached_bundle(config.model, "cpu")
    run_dir = any_result["run_dir"]
    if analysis.self_reward_accuracy:
        pairs = held_out_human_pairs(config, bundle, analysis.accuracy_pairs, seed=seed)
        base = UnetCheckpoint()
        for arm in [a for a in analysis.accuracy_arms or tuple(results) if a in results]:
            for model in results[arm]["models"]:
                if model["label"] == "base":  # its reward against itself is 0 for every image
                    continue
                checkpoint = UnetCheckpoint.model_validate(model["checkpoint"])
                value = self_reward_accuracy(config, bundle, run_dir, checkpoint, base, pairs)
                accuracy.append({"arm": arm, "seed": seed, "model": model["label"], "self_reward_accuracy": value})
    if analysis.selection_arm in results and results[analysis.selection_arm]["rounds"]:
        first = results[analysis.selection_arm]["rounds"][0]
        policy = next(UnetCheckpoint.model_validate(m["checkpoint"]) for m in results[analysis.selection_arm]["models"]
                      if m["label"] == "round-00")
        for a in selection_agreement(config, bundle, run_dir, PromptsRecord.model_validate(first["prompts"]),
                                     CandidatesRecord.model_validate(first["candidates"]), policy, UnetCheckpoint(),
                                     _judge(config), analysis.selection_k, analysis.selection_repeats):
            agreement.append({"seed": seed, "k_draws": a.k_draws, "crn": a.common_random_numbers,
                              "agreement": a.agreement, "spread": a.spread})
    return accuracy, agreement


def _ranking(spec: ExperimentSpec, seed: int, runs_dir: str) -> list[dict]:
    """The ranking estimators of ``analysis.ranking`` on round-1 candidates of this seed's iteration-0
    model (made or reused in the seed's run directory: no SAIL round is trained)."""
    analysis = spec.analysis
    config = load_config(spec.preset, {**spec.overrides, **seed_overrides(seed), **analysis.ranking_overrides})
    bundle = cached_bundle(config.model, "cpu")
    candidate_set = round_one_candidates(config, _seed_run_dir(spec, runs_dir, seed))
    rows = ranking_agreement(config, bundle, candidate_set, _judge(config), analysis.ranking, analysis.ranking_repeats,
                             replayed=True)
    return [{"seed": seed, **row} for row in rows]


def plan_experiment(spec_path: str, seeds: list[int] | None = None, arms: list[str] | None = None,
                    analyses_only: bool = False, analyses: bool = True
                    ) -> tuple[ExperimentSpec, list[int], list[str], bool]:
    """The spec, the seeds, the arms and whether the ranking analysis runs, once every config they need
    is known to be valid (``check_experiment``: one line per problem, before anything runs)."""
    spec = ExperimentSpec.load(spec_path)
    seeds = list(seeds or spec.seeds)
    arm_names = [] if analyses_only else [a.name for a in spec.arms if not arms or a.name in arms]
    run_ranking = analyses and bool(spec.analysis.ranking) and (analyses_only or not arms)
    check_experiment(spec, spec_path, seeds, arms or [], arm_names, analyses, run_ranking)
    return spec, seeds, arm_names, run_ranking


def run_experiment(spec_path: str, out_dir: str, runs_dir: str, seeds: list[int] | None = None,
                   arms: list[str] | None = None, analyses_only: bool = False, analyses: bool = True) -> Path:
    """Run the chosen arms × seeds, then the analyses (``analyses_only``: no arm, only the analyses
    that need none: the ranking estimators'; ``analyses=False``: the arms only, no per-seed analysis).
    Results accumulate in ``out_dir`` across invocations: rows of an earlier invocation are kept unless
    this one recomputes their (arm, seed)."""
    spec, seeds, arm_names, run_ranking = plan_experiment(spec_path, seeds, arms, analyses_only, analyses)
    out = Path(out_dir) / spec.name
    started = time.time()
    rows = _earlier_rows(out, "metrics", lambda r: r["seed"] in seeds and r["arm"] in arm_names)
    accuracy = _earlier_rows(out, "self_reward_accuracy",
                             lambda r: analyses and r["seed"] in seeds and r["arm"] in arm_names)
    agreement = _earlier_rows(out, "selection_agreement",
                              lambda r: analyses and r["seed"] in seeds and spec.analysis.selection_arm in arm_names)
    ranking = _earlier_rows(out, "ranking_agreement", lambda r: run_ranking and r["seed"] in seeds)
    rank_passes = _earlier_rows(out, "ranking_passes", lambda r: r["seed"] in seeds and r["arm"] in arm_names)
    commands = _earlier_commands(out) + [_command(spec_path)]
    for seed in seeds:
        results = {}
        for name in arm_names:
            print(f"== {spec.name}: arm {name}, seed {seed}", flush=True)
            results[name] = _run_arm(spec, name, seed, runs_dir)
            rows += _metric_rows(name, seed, results[name])
            rank_passes += _rank_passes(name, seed, results[name])
        if results and analyses:
            acc, agr = _analyses(spec, seed, results, rows)
            accuracy += acc
            agreement += agr
        if run_ranking:
            print(f"== {spec.name}: ranking estimators, seed {seed}", flush=True)
            ranking += _ranking(spec, seed, runs_dir)
        # rewritten after every seed: an experiment stopped part-way still leaves its finished seeds' tables
        _write_results(out, spec, commands, rows, accuracy, agreement, time.time() - started,
                       sorted({r["seed"] for r in rows + ranking}))
        _write_ranking(out, spec, ranking, rows, rank_passes)
    _write_differences(out, spec, rows, runs_dir)
    return out


# each results table, and what identifies the runs a row came from: a merged row replaces those of its key
MERGED_TABLES = {"metrics": ("arm", "seed"), "self_reward_accuracy": ("arm", "seed"),
                 "selection_agreement": ("seed",), "ranking_agreement": ("setting", "seed"),
                 "ranking_passes": ("arm", "seed")}


def merge_experiment(spec_path: str, out_dir: str, runs_dir: str, other_out: str) -> Path:
    """Fold in the results of the same spec that another process wrote with ``--out other_out`` (other
    seeds or arms, run side by side): a row of theirs replaces this folder's rows of the same arm and seed
    (setting and seed for ranking rows, seed for selection agreement); then every table, plot and the
    differences are rewritten from the merged rows. Nothing is run: the runs must be under ``runs_dir``."""
    spec = ExperimentSpec.load(spec_path)
    out, other = Path(out_dir) / spec.name, Path(other_out) / spec.name
    if not (other / "command.txt").exists():
        raise InputError(f"no results of experiment {spec.name!r} to merge (no command.txt)", file=other)
    _check_same_settings(spec, other / "command.txt")
    started = time.time()
    tables = {}
    for name, key in MERGED_TABLES.items():
        ours, theirs = _earlier_rows(out, name, _none), _earlier_rows(other, name, _none)
        replaced = {tuple(r[k] for k in key) for r in theirs}
        tables[name] = [r for r in ours if tuple(r[k] for k in key) not in replaced] + theirs
    commands = _earlier_commands(out)
    commands += [c for c in _earlier_commands(other) if c not in commands] + [_command(spec_path)]
    rows, ranking = tables["metrics"], tables["ranking_agreement"]
    _write_results(out, spec, commands, rows, tables["self_reward_accuracy"], tables["selection_agreement"],
                   time.time() - started, sorted({r["seed"] for r in rows + ranking}))
    _write_ranking(out, spec, ranking, rows, tables["ranking_passes"])
    _write_differences(out, spec, rows, runs_dir)
    return out


def _check_same_settings(spec: ExperimentSpec, command_file: Path) -> None:
    """Rows of another version of the spec (another preset, override or arm setting) are not this one's."""
    try:
        theirs = ExperimentSpec.model_validate(json.loads(command_file.read_text())["spec"])
    except (ValueError, KeyError, TypeError) as exc:  # ValidationError and JSONDecodeError are ValueErrors
        raise InputError(f"not a results record of sail experiment (its spec cannot be read: "
                         f"{type(exc).__name__})", file=command_file) from exc
    if (theirs.name, theirs.preset, theirs.overrides) != (spec.name, spec.preset, spec.overrides):
        raise InputError(f"results of another spec (name, preset or overrides differ from {spec.name!r}'s)",
                         file=command_file)
    ours = {a.name: (a.rounds, a.overrides) for a in spec.arms}
    differ = sorted(a.name for a in theirs.arms if a.name in ours and ours[a.name] != (a.rounds, a.overrides))
    if differ:
        raise InputError(f"arms {differ} have other settings there than in this spec", file=command_file)


def _write_differences(out: Path, spec: ExperimentSpec, rows: list[dict], runs_dir: str) -> None:
    differences = model_differences(spec.analysis, rows, _scores_reader(spec, runs_dir))
    if differences:
        write_results(out, "differences", differences,
                      differences_markdown(differences, spec.analysis.confidence_level))


def _rank_passes(arm: str, seed: int, result: dict[str, Any]) -> list[dict]:
    """UNet passes per candidate of each round's rank stage (from its record)."""
    out = []
    for index, round_result in enumerate(result["rounds"], start=1):
        pairs, candidates = round_result.get("pairs"), round_result.get("candidates")
        if pairs and candidates:
            n = candidates["n_prompts"] * candidates["n_candidates"]
            out.append({"arm": arm, "seed": seed, "model": f"round-{index:02d}",
                        "passes_per_candidate": pairs["unet_passes"] / n, "mean_draws": pairs["mean_draws"]})
    return out


RANKING_METRICS = ("passes_per_candidate", "agreement", "diff_variance", "settled", "tied", "cap")


def _write_ranking(out: Path, spec: ExperimentSpec, ranking: list[dict], rows: list[dict],
                   rank_passes: list[dict]) -> None:
    """``ranking_agreement``: per setting, passes and agreement (mean ± sd over seeds) and its plot;
    ``ranking_utility``: per ranking arm, its rank stage's passes and the utility after its round(s)."""
    names = [s.name for s in spec.analysis.ranking]
    if ranking:
        order = sorted(ranking, key=lambda r: (names.index(r["setting"]) if r["setting"] in names else len(names)))
        summary = summarize_over_seeds(order, RANKING_METRICS, ("setting",))
        write_results(out, "ranking_agreement", ranking, markdown_table(summary, RANKING_METRICS, ("setting",)))
        series = {s.name: _series(s.reward) for s in spec.analysis.ranking}
        for row in summary:
            row["series"] = series.get(row["setting"], "other")
        plot_tradeoff(summary, "passes_per_candidate", "agreement", out / "ranking_agreement.png")
        versus = ranking_versus_reference(spec.analysis, order)
        if versus:
            write_results(out, "ranking_vs_reference", versus, ranking_versus_markdown(versus, spec.analysis))
    arms = set(names)
    utility = [{**r, **p} for r in rows if r["arm"] in arms
               for p in rank_passes if (p["arm"], p["seed"], p["model"]) == (r["arm"], r["seed"], r["model"])]
    if utility:
        metrics = ("passes_per_candidate", "utility", "utility_win_rate")
        write_results(out, "ranking_utility", utility, markdown_table(summarize_over_seeds(utility, metrics), metrics))
    if rank_passes:
        write_table(out / "ranking_passes.parquet", results_table(rank_passes), overwrite=True)


def _series(reward: dict[str, Any]) -> str:
    """The line a setting belongs to in the trade-off plot: its estimator and variance reduction."""
    kind = reward.get("estimator", "fixed")
    extras = [name for name in ("stratified", "antithetic") if reward.get(name)]
    if kind == "sequential" and reward.get("indifference"):
        extras.append(f"δ={reward['indifference']}")
    return " + ".join([kind, *extras])


def _earlier_rows(out: Path, name: str, replaced: Callable[[dict], bool]) -> list[dict]:
    path = out / f"{name}.parquet"
    return [r for r in read_table(path).to_pylist() if not replaced(r)] if path.exists() else []


def _none(_row: dict) -> bool:
    return False


def _earlier_commands(out: Path) -> list[str]:
    path = out / "command.txt"
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    return record.get("commands") or [record["command"]]


def _command(spec_path: str) -> str:
    args = sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "experiment" else [spec_path]
    return "sail experiment " + " ".join(shlex.quote(a) for a in args)


def _write_results(out: Path, spec: ExperimentSpec, commands: list[str], rows: list[dict], accuracy: list[dict],
                   agreement: list[dict], seconds: float, seeds_done: list[int]) -> None:
    if rows:
        write_results(out, "metrics", rows, markdown_table(summarize_over_seeds(rows, METRICS), METRICS))
        plot_utility(rows, spec.analysis.plots, out)
    if accuracy:
        write_results(out, "self_reward_accuracy", accuracy,
                      markdown_table(summarize_over_seeds(accuracy, ["self_reward_accuracy"]),
                                     ["self_reward_accuracy"]))
    if agreement:
        for row in agreement:
            row["setting"] = f"K={row['k_draws']} {'CRN' if row['crn'] else 'independent'}"
        write_results(out, "selection_agreement", agreement,
                      markdown_table(summarize_over_seeds(agreement, ["agreement"], ("setting",)), ["agreement"],
                                     ("setting",)))
    write_text(out / "command.txt", json.dumps({
        "commands": commands, "spec": spec.model_dump(mode="json"),
        "seeds_done": seeds_done, "seconds_last_invocation": round(seconds, 1)}, indent=2),
        overwrite=True)
