"""Stage: evaluate one model under the pinned protocol and summarise against a baseline (the base model)."""

from __future__ import annotations

import hashlib
import itertools
import json

import numpy as np
import pyarrow as pa

from sail_core.config import SailConfig
from sail_core.data.prompt_sets import prompt_set_from_spec
from sail_core.errors import InputError
from sail_core.evaluation.protocol import eval_items, generate_eval_images, protocol_record
from sail_core.evaluation.scoring import build_scorers, score_images
from sail_core.evaluation.summary import summarize
from sail_core.images import encode_png, image_grid
from sail_core.io.atomic import write_bytes, write_text
from sail_core.io.tables import read_table, table_metadata, write_table
from sail_core.models.denoisers import load_policy
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.lineage import ModelRef
from sail_core.run.records import EvalRecord
from sail_core.run.stage import ProgressCounter, Stage, StageContext, StageInputs

ITEM_COLUMNS = ("prompt", "category", "seed_index", "seed")


def eval_prompts(config: SailConfig) -> tuple[list[str], list[str]]:
    """Prompts and their categories (the set's own, e.g. HPSv2's styles, else the set's name)."""
    if not config.eval.prompts:
        raise InputError("no evaluation prompts given", parameter="eval.prompts")
    prompts, categories = [], []
    for spec in config.eval.prompts:
        loaded = prompt_set_from_spec(spec)
        prompts += loaded.prompts
        categories += loaded.categories or [loaded.name] * len(loaded)
    limit = config.eval.max_prompts
    if not limit or limit >= len(prompts):
        return prompts, categories
    # take prompts round-robin over categories, so a subsample of the HPSv2 benchmark keeps all four styles
    by_category: dict[str, list[int]] = {}
    for index, category in enumerate(categories):
        by_category.setdefault(category, []).append(index)
    order = [i for group in itertools.zip_longest(*by_category.values()) for i in group if i is not None]
    chosen = sorted(order[:limit])
    return [prompts[i] for i in chosen], [categories[i] for i in chosen]


def _baseline_scores(layout: RunLayout, baseline: EvalRecord, protocol: dict, items) -> dict[str, np.ndarray]:
    path = baseline.scores.resolve(layout.root)
    if json.loads(table_metadata(path)["protocol"]) != protocol:
        raise InputError("the baseline was evaluated under another protocol", file=path)
    table = read_table(path).to_pydict()
    index = {(p, s): i for i, (p, s) in enumerate(zip(table["prompt"], table["seed_index"]))}
    try:
        rows = [index[(item.prompt, item.seed_index)] for item in items]
    except KeyError as exc:
        raise InputError(f"the baseline has no score for {exc}", file=path) from exc
    return {k: np.asarray(v)[rows] for k, v in table.items() if k not in ITEM_COLUMNS}


class EvaluateInputs(StageInputs):
    model: ModelRef
    label: str
    """The model's name in tables and folders (``base``, ``round-00``, ...)."""
    baseline: EvalRecord | None = None
    """The base model's evaluation under the same protocol: win rates are computed against it."""


def evaluate_model(ctx: StageContext, inputs: EvaluateInputs) -> EvalRecord:
    config, bundle, layout, out_dir = ctx.config, ctx.bundle, ctx.layout, ctx.out_dir
    checkpoint, label, baseline = inputs.model.checkpoint, inputs.label, inputs.baseline
    prompts, categories = eval_prompts(config)
    items = eval_items(prompts, categories, config.eval)
    protocol = protocol_record(bundle, config.eval)
    scores_file, summary_file = out_dir / "scores.parquet", out_dir / "summary.json"
    grid_file = out_dir / "grid.png"
    if not scores_file.exists():
        denoisers = load_policy(config.model, layout.root, checkpoint, ctx.device, runtime=config.runtime)
        counter = ProgressCounter(len(items), ctx.progress)
        images = generate_eval_images(denoisers.policy, bundle, items, config.eval, denoisers.dtype, counter.advance)
        scorers = build_scorers(config.eval.scorers, bundle.device, config.eval.scorer_sources,
                                config.eval.scorer_options)
        scores = score_images(scorers, images, [i.prompt for i in items])
        shown = [k for k, item in enumerate(items) if item.prompt_index < config.eval.grid_prompts]
        if shown:
            write_table(out_dir / "images.parquet", {
                "prompt": [items[k].prompt for k in shown], "seed_index": [items[k].seed_index for k in shown],
                "png": [encode_png(images[k]) for k in shown],
            }, overwrite=True)
            scale = max(1, 128 // images.shape[1])
            grid = image_grid([images[k] for k in shown], columns=config.eval.seeds_per_prompt, scale=scale)
            write_bytes(grid_file, encode_png(grid), overwrite=True)
        table = {
            "prompt": [i.prompt for i in items], "category": [i.category for i in items],
            "seed_index": [i.seed_index for i in items], "seed": [i.seed for i in items], **scores,
        }
        write_table(scores_file, pa.table(table), metadata={"protocol": json.dumps(protocol), "label": label,
                                                             "model": checkpoint.model_dump_json()})
    table = read_table(scores_file).to_pydict()
    scores = {k: np.asarray(v, dtype=np.float64) for k, v in table.items() if k not in ITEM_COLUMNS}
    base = _baseline_scores(layout, baseline, protocol, items) if baseline is not None else None
    metrics = summarize(scores, table["category"], base)
    write_text(summary_file, json.dumps({"label": label, "protocol": protocol, "metrics": metrics}, indent=2),
               overwrite=True)
    return EvalRecord(
        label=label, scores=Artifact.of(layout.root, scores_file), summary=Artifact.of(layout.root, summary_file),
        metrics=metrics, grid=Artifact.of(layout.root, grid_file) if grid_file.exists() else None,
    )


def eval_prompts_digest(config: SailConfig) -> str:
    """Hash of the evaluation prompts and categories themselves: a ``kind:path`` spec, a folder whose
    files changed, or a renamed copy of the same file are all judged by their content."""
    return hashlib.sha256(json.dumps(eval_prompts(config)).encode()).hexdigest()


EVALUATE = Stage(
    name="evaluate", inputs=EvaluateInputs, record=EvalRecord, run=evaluate_model,
    group=lambda inputs: f"eval-{inputs.label}",
    settings=lambda config, inputs: {"model": model_settings(config), "eval": config.eval.model_dump(mode="json")},
    external=lambda config, inputs: [eval_prompts_digest(config)],
    code=("sail_core.evaluation.protocol", "sail_core.evaluation.scoring", "sail_core.evaluation.summary",
          "sail_core.algorithm.sampler"),
    description="held-out prompts, fixed seeds, scores and win rates against the base",
)
