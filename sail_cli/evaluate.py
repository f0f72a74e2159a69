"""``sail evaluate``: evaluate a run's models (base, iteration 0, rounds 1..R) and/or other checkpoints on
one or more prompt sets under one pinned protocol, and write the paper's results tables (SAIL Tables
1-3), a plot per metric and prompt set, and the same prompts and seeds side by side.

Every (model, prompt set) evaluation is a keyed stage of the output folder,
``<out>/eval-<label>/evaluate-<key>/`` with its record beside it: a rerun reuses every finished
evaluation and computes only what a new model, prompt set or setting asks for. The base model is
always evaluated first; its evaluation on a prompt set is the baseline of the win rates there.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sail_core.config import SailConfig, load_config
from sail_core.errors import InputError
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.run.keys import StageKey, path_fingerprint
from sail_core.run.layout import RunLayout, check_name
from sail_core.run.lineage import ModelRef, base_model
from sail_core.run.records import EvalRecord

Log = Callable[[str], None]
BASE_LABEL = "base"


@dataclass(frozen=True)
class EvalModel:
    label: str
    ref: ModelRef
    """Checkpoint paths are absolute: evaluations live in the output folder, not in the run."""
    source: str


@dataclass(frozen=True)
class EvalPromptSet:
    spec: str
    """As given: ``<kind>:<path>`` or a path (``pkg:`` paths included)."""
    name: str
    """The column group of the tables (the set's own name, made unique)."""
    n_prompts: int
    sha256: str
    """Of the prompts and categories evaluated (after ``eval.max_prompts``)."""


@dataclass(frozen=True)
class Evaluated:
    model: EvalModel
    prompt_set: EvalPromptSet
    key: StageKey
    record: EvalRecord
    reused: bool


# ---------------------------------------------------------------------------------------------- config


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"not a readable JSON file ({exc})", file=path) from exc


def run_config_file(run: Path) -> Path:
    """The config a run was made with, as the flow saved it (``<run>/report*/config.json``)."""
    found = sorted(run.glob("report*/config.json"))
    if not found:
        raise InputError("the run has no saved config (report/config.json); pass --config or --preset", file=run)
    if len({json.dumps(_read_json(f), sort_keys=True) for f in found}) > 1:
        raise InputError(f"the run holds several configs ({', '.join(str(f) for f in found)}); pass --config",
                         file=run)
    return found[0]


def protocol_config(run: Path | None, preset: str | None, config_file: str | None,
                    overrides: Sequence[str]) -> SailConfig:
    if config_file or preset:
        return load_config(config_file or preset, list(overrides))
    if run is None:
        raise InputError("nothing fixes the protocol: give a run directory, --config or --preset", parameter="--config")
    return load_config(run_config_file(run), list(overrides))


def with_eval(config: SailConfig, **changes: Any) -> SailConfig:
    data = config.model_dump(mode="json")
    data["eval"].update(changes)
    try:
        return SailConfig.model_validate(data)
    except ValueError as exc:
        raise InputError(f"invalid evaluation settings: {exc}", parameter="eval") from exc


def _pairs(items: Sequence[str], option: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise InputError(f"expected NAME=VALUE, got {item!r}", parameter=option)
        out.append((name.strip(), value.strip()))
    return out


def _scorer_name(name: str) -> str:
    from sail_core.evaluation.scorers import canonical_name

    return canonical_name(name)


def scorer_settings(config: SailConfig, scorers: Sequence[str], sources: Sequence[str],
                    options: Sequence[str]) -> dict[str, Any]:
    """``eval`` changes from ``--scorer``, ``--scorer-source NAME=SOURCE``, ``--scorer-option NAME.KEY=VALUE``."""
    names = [_scorer_name(s) for s in scorers or config.eval.scorers]
    if not names:
        raise InputError("no scorers: the config names none, so pass --scorer", parameter="--scorer")
    # the config's sources and options of scorers no longer evaluated are dropped; the command line's
    # must name an evaluated scorer (a typo would otherwise silently score with the published weights)
    chosen = {n: v for k, v in config.eval.scorer_sources.items() if (n := _scorer_name(k)) in names}
    extra = {n: dict(v) for k, v in config.eval.scorer_options.items() if (n := _scorer_name(k)) in names}
    for name, value in _pairs(sources, "--scorer-source"):
        chosen[_evaluated(name, names, "--scorer-source")] = value
    for target, value in _pairs(options, "--scorer-option"):
        scorer, dot, option = target.rpartition(".")
        if not dot or not scorer:
            raise InputError(f"expected NAME.OPTION=VALUE, got {target!r}", parameter="--scorer-option")
        extra.setdefault(_evaluated(scorer, names, "--scorer-option"), {})[option] = (
            int(value) if value.isdigit() else value)
    return {"scorers": names, "scorer_sources": chosen, "scorer_options": extra}


def _evaluated(name: str, names: Sequence[str], option: str) -> str:
    canonical = _scorer_name(name)
    if canonical not in names:
        raise InputError(f"scorer {name!r} is not evaluated (scorers: {list(names)})", parameter=option)
    return canonical


# ----------------------------------------------------------------------------------------- prompt sets


def load_prompt_sets(config: SailConfig, specs: Sequence[str]) -> list[EvalPromptSet]:
    """Every set loaded (and checked) before anything is generated: a bad file fails in seconds, not
    after hours of evaluating the sets before it."""
    from sail_core.data.prompt_sets import prompt_set_from_spec
    from sail_core.stages.evaluate import eval_prompts

    specs = list(specs or config.eval.prompts)
    if not specs:
        raise InputError("no prompt sets: the config names none, so pass --prompts", parameter="--prompts")
    out: list[EvalPromptSet] = []
    for spec in specs:
        name = prompt_set_from_spec(spec).name
        prompts, categories = eval_prompts(with_eval(config, prompts=[spec]))
        taken = {s.name for s in out}
        unique = next(n for n in [name, *(f"{name}-{i}" for i in range(2, len(specs) + 2))] if n not in taken)
        digest = hashlib.sha256(json.dumps([prompts, categories]).encode()).hexdigest()
        out.append(EvalPromptSet(spec, unique, len(prompts), digest))
    return out


# ---------------------------------------------------------------------------------------------- models


def _check_label(label: str) -> str:
    """A label names the model's evaluation folder: one path component."""
    return check_name(label, "model label (it names a folder)", "--checkpoint")


def _absolute(model: ModelRef, root: Path) -> ModelRef:
    """Checkpoint paths relative to the run made absolute: the evaluations live in another folder."""
    root, checkpoint = root.resolve(), model.checkpoint
    return model.model_copy(update={"checkpoint": checkpoint.model_copy(update={
        "weights": None if checkpoint.weights is None else str(root / checkpoint.weights),
        "adapters": tuple(str(root / a) for a in checkpoint.adapters),
    })})


def trained(sidecar: Path, label: str) -> EvalModel:
    """The model of a finished train stage (its record ``<run>/round-NN/train-<key>.json``), checked intact."""
    from sail_core.run.bookkeeping import finished_record, stage_dir
    from sail_core.run.records import ModelRecord

    entry = _read_json(sidecar)
    if not isinstance(entry, dict) or entry.get("stage") != "train":
        raise InputError("not a train stage's record", file=sidecar)
    try:
        key = StageKey(entry["stage"], entry["group"], entry["settings"], tuple(entry["inputs"]), entry.get("code", ""))
    except (KeyError, TypeError) as exc:
        raise InputError(f"not a stage record: {exc!r}", file=sidecar) from exc
    if key.key != entry.get("key"):
        raise InputError("the record's key does not match its settings and inputs", file=sidecar)
    layout = RunLayout(sidecar.parent.parent)
    record = finished_record(layout, key, ModelRecord)
    if record is None:
        raise InputError("the train stage's files changed or vanished since it finished", file=stage_dir(layout, key))
    return EvalModel(label, _absolute(record.model, layout.root), str(sidecar))


def run_models(run: Path) -> list[EvalModel]:
    """The models a run evaluated, as its flow recorded them (``<run>/report*/models.json``), base first."""
    if not run.is_dir():
        raise InputError("run directory does not exist", file=run)
    found = sorted(run.glob("report*/models.json"))
    if not found:
        raise InputError("the run has no list of its models (report/models.json); was it made by sail run?", file=run)
    if len(found) > 1:
        raise InputError(f"the run holds several reports ({', '.join(str(f) for f in found)}); name the models "
                         "with --checkpoint LABEL=<train record>", file=run)
    entries = _read_json(found[0])
    try:
        return [EvalModel(e["label"], _absolute(ModelRef.model_validate(e), run), str(found[0])) for e in entries]
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a list of models: {exc}", file=found[0]) from exc


def _folder_identity(folder: Path) -> str:
    return "unet:" + hashlib.sha256(path_fingerprint(folder).encode()).hexdigest()[:32]


def explicit_model(text: str) -> EvalModel:
    """``LABEL=PATH``: a train stage (its record ``<run>/round-NN/train-<key>.json``, its folder or the
    ``model.json`` in it), or a diffusers UNet folder (or a pipeline folder with ``unet/``), e.g. a
    published Diffusion-DPO UNet."""
    label, path_text = _pairs([text], "--checkpoint")[0]
    label, path = _check_label(label), Path(path_text)
    if not path.exists():
        raise InputError("checkpoint does not exist", file=path)
    if path.name == "model.json" and path.parent.name.startswith("train-"):
        path = path.parent  # the checkpoint spec inside a train stage: the stage is the model
    if path.is_file() and path.suffix == ".json":
        return trained(path, label)
    if path.is_dir() and path.name.startswith("train-") and path.with_suffix(".json").is_file():
        return trained(path.with_suffix(".json"), label)
    unet = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if (unet / "config.json").is_file():
        checkpoint = UnetCheckpoint(kind="full", weights=str(unet.resolve()), label=label)
        return EvalModel(label, ModelRef(checkpoint=checkpoint, identity=_folder_identity(unet)), str(path))
    raise InputError("not a checkpoint: expected a train stage record (round-NN/train-<key>.json) or folder, "
                     "or a diffusers UNet folder (config.json + weights)", file=path)


def models_to_evaluate(config: SailConfig, run: Path | None, checkpoints: Sequence[str]) -> list[EvalModel]:
    base = EvalModel(BASE_LABEL, base_model(config), config.model.source)
    of_run = [m for m in run_models(run) if m.label != BASE_LABEL] if run else []
    models = [base, *of_run, *(explicit_model(c) for c in checkpoints)]
    labels = [m.label for m in models]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InputError(f"model label(s) {duplicates} used twice (the run's are {BASE_LABEL}, round-NN)",
                         parameter="--checkpoint")
    return models


# ------------------------------------------------------------------------------------------ evaluation


def _progress(log: Log, prefix: str) -> Callable[[int, int], None]:
    """Reports every tenth of the way, not every batch (3,200 HPSv2 prompts are hundreds of batches)."""
    shown = {-1}

    def report(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth not in shown:
            shown.add(tenth)
            log(f"{prefix}: {done}/{total} images")

    return report


def evaluate_one(config: SailConfig, layout: RunLayout, prompt_set: EvalPromptSet, model: EvalModel,
                 baseline: EvalRecord | None, log: Log) -> Evaluated:
    from sail_core.run.runner import prepare
    from sail_core.stages import EVALUATE, EvaluateInputs

    inputs = EvaluateInputs(model=model.ref, label=model.label, baseline=baseline)
    prepared = prepare(EVALUATE, with_eval(config, prompts=[prompt_set.spec]), layout, inputs)
    record = prepared.finished()
    if record is not None:
        log(f"{model.label} on {prompt_set.name}: finished earlier, reused")
        return Evaluated(model, prompt_set, prepared.key, record, reused=True)
    record = prepared.execute(_progress(log, f"{model.label} on {prompt_set.name}"))
    return Evaluated(model, prompt_set, prepared.key, record, reused=False)


def evaluate_all(config: SailConfig, layout: RunLayout, models: Sequence[EvalModel],
                 prompt_sets: Sequence[EvalPromptSet], log: Log) -> list[Evaluated]:
    """Per prompt set, the base first (``models[0]``): its evaluation is the others' baseline."""
    done: list[Evaluated] = []
    for prompt_set in prompt_sets:
        baseline: EvalRecord | None = None
        for model in models:
            done.append(evaluate_one(config, layout, prompt_set, model, baseline, log))
            baseline = baseline or done[-1].record
    return done


def _index(evaluated: Sequence[Evaluated], layout: RunLayout) -> list[dict[str, Any]]:
    from sail_core.run.bookkeeping import stage_dir

    return [{
        "model": e.model.label, "identity": e.model.ref.identity, "source": e.model.source,
        "checkpoint": e.model.ref.checkpoint.model_dump(mode="json"), "prompt_set": e.prompt_set.name,
        "spec": e.prompt_set.spec, "n_prompts": e.prompt_set.n_prompts, "key": e.key.key,
        "stage_dir": layout.rel(stage_dir(layout, e.key)), "reused": e.reused,
        "record": e.record.model_dump(mode="json"),
    } for e in evaluated]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sail_core.evaluation.report import (
        ModelEvaluation,
        TableLayout,
        metrics_table,
        to_markdown,
        win_rate_table,
        write_report,
    )
    from sail_core.io.atomic import write_text

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    run = Path(args.run) if args.run else None
    if run is not None and not run.is_dir():
        raise InputError("the run directory does not exist", file=run)
    config = protocol_config(run, args.preset, args.config, args.set)
    config = with_eval(config, **scorer_settings(config, args.scorer, args.scorer_source, args.scorer_option))
    prompt_sets = load_prompt_sets(config, args.prompts)
    models = models_to_evaluate(config, run, args.checkpoint)
    layout = RunLayout(Path(args.out))
    evaluated = evaluate_all(config, layout, models, prompt_sets, log)

    evaluations = [ModelEvaluation(e.model.label, e.prompt_set.name, e.record) for e in evaluated]
    table_layout = TableLayout(category_metric=args.category_metric,
                               category_sets=tuple(args.per_category or TableLayout.category_sets))
    report = layout.root / "report"
    files = write_report(evaluations, layout.root, report, table_layout, baseline=BASE_LABEL)
    write_text(report / "evaluations.json", json.dumps(_index(evaluated, layout), indent=2), overwrite=True)
    write_text(report / "config.json", json.dumps(config.model_dump(mode="json"), indent=2), overwrite=True)
    print(to_markdown(metrics_table(evaluations, table_layout)))
    print()
    print(to_markdown(win_rate_table(evaluations, BASE_LABEL)))
    print(f"\nreport: {files.markdown}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="evaluate a run's models and/or checkpoints on prompt sets and write the results tables",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", nargs="?", help="a run directory: evaluates its base, round-00 (seed DPO) and rounds 1..R")
    p.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH",
                   help="another model: a train stage record/folder of a run, or a diffusers UNet folder "
                        "(repeatable)")
    p.add_argument("--prompts", action="append", default=[], metavar="KIND:PATH",
                   help="a prompt set, e.g. hpsv2_benchmark:/data/hpsv2, partiprompts:PartiPrompts.tsv, "
                        "pickapic_v2_validation_unique:/data/pickapic, text:prompts.txt (repeatable; "
                        "default: the config's eval.prompts)")
    p.add_argument("--scorer", action="append", default=[], metavar="NAME",
                   help="pickscore, imagereward, aesthetic, hpsv2, hpsv2.1, clipscore or world (repeatable; "
                        "default: the config's eval.scorers)")
    p.add_argument("--scorer-source", action="append", default=[], metavar="NAME=SOURCE",
                   help="a scorer's weights: Hub id, local file/folder, or 'random' for tiny random weights")
    p.add_argument("--scorer-option", action="append", default=[], metavar="NAME.OPTION=VALUE",
                   help="a scorer's other pieces, e.g. aesthetic.clip=/models/clip-vit-large-patch14")
    p.add_argument("--preset", help="protocol from a preset instead of the run's config")
    p.add_argument("--config", help="protocol from a config file instead of the run's config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set eval.seeds_per_prompt=4 (repeatable)")
    p.add_argument("--category-metric", help="the metric shown per category (default: hpsv2 if evaluated)")
    p.add_argument("--per-category", action="append", default=[], metavar="PROMPT_SET",
                   help="prompt sets with per-category columns (repeatable; default: hpsv2_benchmark)")
    p.add_argument("--out", required=True, help="output folder: the evaluations (reused on reruns) and report/")
    p.set_defaults(func=cmd_evaluate)
