"""What the Prefect UI shows of a run: a metrics table per round and a markdown artifact with samples."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from sail_core.evaluation.report import ModelEvaluation, metrics_table, to_markdown, win_rate_table
from sail_core.evaluation.run_report import detail_names, iteration_rows, metric_names
from sail_core.run.records import EvalRecord, ExportRecord
from tasks.artifact_keys import run_key, slug

MAX_GRID_SIDE = 768
"""Grids are embedded in the artifact as data URIs: larger ones are shrunk to keep the API payload small."""


def _data_uri(path: Path) -> str:
    image = Image.open(path).convert("RGB")
    if max(image.size) > MAX_GRID_SIDE:
        image.thumbnail((MAX_GRID_SIDE, MAX_GRID_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def publish_metrics(run_name: str, records: Sequence[EvalRecord], prompt_set: str = "eval") -> None:
    """The metrics of every iteration so far: a table artifact (every number) and the paper-layout
    table of ``sail evaluate`` (mean ± 95% CI per metric, per-category columns, win rates)."""
    rows = iteration_rows(records)
    # the UI takes a table's columns from its first row, and the base has no win rates: every row of every
    # version gets every column, win rates included (details' too), in one order
    scores = [*metric_names(records), *detail_names(records)]
    keys = {k for row in rows for k in row} | {f"{m}_win_rate" for m in scores}
    columns = ["model", *sorted(keys - {"model"})]
    rows = [{k: (round(row[k], 5) if isinstance(row.get(k), float) else row.get(k)) for k in columns} for row in rows]
    create_table_artifact(key=f"sail-metrics-{run_key(run_name)}", table=rows,
                          description=f"SAIL metrics per iteration for run {run_name}")
    evaluations = [ModelEvaluation(r.label, prompt_set, r) for r in records]
    markdown = to_markdown(metrics_table(evaluations))
    if len(records) > 1:
        markdown += "\n\n" + to_markdown(win_rate_table(evaluations, records[0].label))
    create_markdown_artifact(key=f"sail-report-{run_key(run_name)}", markdown=markdown,
                             description=f"SAIL results table for run {run_name}")


def publish_samples(run_name: str, record: EvalRecord, run_dir: str | Path) -> None:
    metrics = metric_names([record])
    lines = [f"## {record.label}", "", "| metric | mean | 95% CI | win rate vs base |", "|---|---|---|---|"]
    for m in metrics:
        win = record.metrics.get(f"{m}_win_rate")
        lines.append(f"| {m} | {record.metrics[m]:.4f} | ±{record.metrics.get(m + '_ci95', float('nan')):.4f} | "
                     f"{'-' if win is None else f'{win:.3f}'} |")
    if record.grid is not None:
        path = Path(run_dir) / record.grid.path
        lines += ["", f"Samples (rows: prompts, columns: seeds) from `{record.grid.path}`:", "",
                  f"![{record.label}]({_data_uri(path)})"]
    create_markdown_artifact(key=f"sail-samples-{run_key(run_name)}-{slug(record.label)}", markdown="\n".join(lines),
                             description=f"Evaluation samples of {record.label}")


def export_snippet(record: ExportRecord, location: str) -> str:
    """The record's load snippet (which names the folder relative to the run) with the folder's location."""
    return record.snippet.replace(repr(record.folder.path), repr(location))


def publish_export(run_name: str, record: ExportRecord, location: str, run_location: str) -> None:
    """Where the run's exported model is, and how to load it and sample it."""
    markdown = "\n".join([
        f"## Exported model: {record.label}", "",
        f"{record.label} ({record.chosen_by}), as a {'LoRA' if record.kind == 'lora' else 'pipeline folder'}, "
        f"with its model card (`README.md`): `{location}`", "",
        "Load it with diffusers:", "", "```python", export_snippet(record, location), "```", "",
        "Or draw a grid with the run's sampler:", "",
        f"`sail sample {run_location} --model {record.label} --prompt \"...\" --seeds 0-3 --out grid.png`",
    ])
    create_markdown_artifact(key=f"sail-export-{run_key(run_name)}", markdown=markdown,
                             description=f"The exported model of run {run_name}")
