"""What the Prefect UI shows of a run: one live metrics table, sample grids with their prompts, the export."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from prefect import get_client
from prefect.artifacts import Artifact, MarkdownArtifact, TableArtifact, create_markdown_artifact
from prefect.client.schemas.actions import ArtifactUpdate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, FlowRunFilterId
from prefect.runtime import flow_run

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


def _publish(artifact: Artifact) -> None:
    """One card per run and key: the first call creates the artifact, later calls of the same flow run
    update it in place (a new version per call would be a new card on the run's page each time)."""
    run_id = flow_run.get_id()
    with get_client(sync_client=True) as client:
        existing = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact.key])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])), limit=1) if run_id else []
        if existing:
            client.update_artifact(existing[0].id, ArtifactUpdate(data=artifact.format(),
                                                                  description=artifact.description))
            return
    artifact.create()


def metric_columns(records: Sequence[EvalRecord]) -> list[str]:
    """``model``, the headline metric, its 95% CI and its win rate against the base, then every other
    metric with its CI and win rate, then the details (``<group>.<name>``)."""
    columns = ["model"]
    for name in [*metric_names(records), *detail_names(records)]:
        columns += [name, f"{name}_ci95", f"{name}_win_rate"]
    present = {k for r in records for k in r.metrics}
    # a win-rate column stays even before any row has one (the UI takes its columns from the first row)
    return [c for c in columns if c == "model" or c in present or c.endswith("_win_rate")]


def _rounded(value: object) -> object:
    return round(value, 4) if isinstance(value, float) else value


def publish_metrics(run_name: str, records: Sequence[EvalRecord], prompt_set: str = "eval") -> None:
    """The metrics of every iteration so far: a table (every number, rounded, the headline first) and the
    paper-layout table of ``sail evaluate`` (mean ± 95% CI per metric, per-category columns, win rates);
    one card each per run, updated after every evaluation."""
    columns = metric_columns(records)
    rows = [{c: _rounded(row.get(c)) for c in columns} for row in iteration_rows(records)]
    _publish(TableArtifact(key=f"sail-metrics-{run_key(run_name)}", table=rows,
                           description=f"SAIL metrics per iteration for run {run_name}: headline metric, its 95% CI "
                                       "and its win rate against the base first"))
    evaluations = [ModelEvaluation(r.label, prompt_set, r) for r in records]
    markdown = to_markdown(metrics_table(evaluations))
    if len(records) > 1:
        markdown += "\n\n" + to_markdown(win_rate_table(evaluations, records[0].label))
    _publish(MarkdownArtifact(key=f"sail-report-{run_key(run_name)}", markdown=markdown,
                              description=f"SAIL results table for run {run_name}"))


def _prompt_lines(prompts: Sequence[str]) -> list[str]:
    return ["", "Prompts, one per row of the grid:", "", *[f"{i + 1}. {p}" for i, p in enumerate(prompts)]]


def publish_samples(run_name: str, record: EvalRecord, run_dir: str | Path, prompts: Sequence[str] = ()) -> None:
    metrics = metric_names([record])
    lines = [f"## {record.label}", "", "| metric | mean | 95% CI | win rate vs base |", "|---|---|---|---|"]
    for m in metrics:
        win = record.metrics.get(f"{m}_win_rate")
        lines.append(f"| {m} | {record.metrics[m]:.4f} | ±{record.metrics.get(m + '_ci95', float('nan')):.4f} | "
                     f"{'-' if win is None else f'{win:.3f}'} |")
    if record.grid is not None:
        path = Path(run_dir) / record.grid.path
        lines += ["", f"Samples (rows: prompts, columns: seeds) from `{record.grid.path}`:", "",
                  f"![{record.label}]({_data_uri(path)})", *(_prompt_lines(prompts) if prompts else [])]
    create_markdown_artifact(key=f"sail-samples-{run_key(run_name)}-{slug(record.label)}", markdown="\n".join(lines),
                             description=f"Evaluation samples of {record.label}")


def publish_comparison(run_name: str, grid: Path, labels: Sequence[str], prompts: Sequence[str]) -> None:
    """The report's grid: the same prompts and seeds for the base and every round, side by side."""
    lines = [f"## Every model side by side: {', '.join(labels)}", "",
             f"Columns: {', '.join(labels)}; rows: prompts (and seeds), from `{grid.parent.name}/{grid.name}`.", "",
             f"![side by side]({_data_uri(grid)})", *_prompt_lines(prompts)]
    create_markdown_artifact(key=f"sail-samples-{run_key(run_name)}-side-by-side", markdown="\n".join(lines),
                             description=f"The base beside every round of run {run_name}")


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
