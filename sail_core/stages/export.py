"""Stage: the run's chosen model (``export.model``, default the best round) as a folder plain diffusers
loads, with its model card (:mod:`sail_core.export`), in ``<run>/export/export-<key>/``.

Keyed like every stage: by the export settings, the models and their evaluations (so a new round or a
new evaluation exports again, and a rerun with nothing new is ``Cached``). The sample grid is drawn from
the evaluations' images, as the report's is; the card's load snippet names the folder relative to the
run directory and the card does not name the run, so a run directory that moves or is renamed, and a
run's working copy on another host, hold the same export.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from pydantic import model_validator

from sail_core.evaluation.run_report import metric_names, side_by_side
from sail_core.export.exporter import SAMPLES_FILE, export_model
from sail_core.export.run_contents import FinishedRun, RunModel
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef
from sail_core.run.records import EvalRecord, ExportRecord
from sail_core.run.stage import Stage, StageContext, StageInputs


class ExportInputs(StageInputs):
    models: tuple[ModelRef, ...]
    """The run's evaluated models in order: the base, iteration 0, the rounds."""
    evaluations: tuple[EvalRecord, ...]
    """Their evaluations, in the same order (labels and metrics)."""

    @model_validator(mode="after")
    def _paired(self) -> ExportInputs:
        if len(self.models) != len(self.evaluations):
            raise ValueError("one evaluation per model")
        return self


def export_run_model(ctx: StageContext, inputs: ExportInputs) -> ExportRecord:
    root = ctx.layout.root
    evaluations = list(inputs.evaluations)
    models = tuple(RunModel(e.label, m, dict(e.metrics)) for e, m in zip(evaluations, inputs.models))
    headline = metric_names(evaluations)
    with tempfile.TemporaryDirectory() as scratch:
        side_by_side(evaluations, root, Path(scratch) / SAMPLES_FILE)
        run = FinishedRun(location=str(root), root=root, config=ctx.config, models=models,
                          primary_metric=headline[0] if headline else None, report=Path(scratch), named=False)
        rel = ctx.layout.rel(ctx.out_dir)
        result = export_model(run, ctx.out_dir, ctx.config.export, overwrite=True, location=rel)
    return ExportRecord(folder=Artifact.of(root, ctx.out_dir), label=result.label, kind=result.kind,
                        chosen_by=result.chosen_by, snippet=result.snippet)


def export_reads(ctx: StageContext, inputs: ExportInputs) -> Iterator[list[str]]:
    """The evaluations' images (the sample grid); the models' weights come with the inputs."""
    yield [(Path(e.scores.path).parent / "images.parquet").as_posix() for e in inputs.evaluations]


EXPORT = Stage(
    name="export", inputs=ExportInputs, record=ExportRecord, run=export_run_model,
    group=lambda inputs: "export",
    settings=lambda config, inputs: {"model": model_settings(config), "train_mode": config.model.train_mode,
                                     "export": config.export.model_dump(mode="json")},
    reads=export_reads,
    code=("sail_core.export.exporter", "sail_core.export.lora_merge", "sail_core.export.pipeline_folder",
          "sail_core.export.model_card", "sail_core.export.run_contents", "sail_core.export.pixel_pipeline"),
    description="the chosen model as a folder diffusers loads, with its model card",
)
