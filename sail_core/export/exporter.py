"""A model of a finished run, out of the run: one folder that plain diffusers loads, with its card.

:func:`export_model` chooses the model (``best``, ``last`` or a label), checks its weights against what
their training recorded, and writes the folder atomically (a reader never sees half an export, and an
existing folder is replaced only when asked): the weights (:mod:`sail_core.export.pipeline_folder`), the
run's sample grid, ``README.md`` (:mod:`sail_core.export.model_card`) and ``sail_export.json`` (which
model, why, and the report's metrics at full precision). The run directory is only read.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from sail_core.config import ExportConfig
from sail_core.errors import InputError
from sail_core.export.lora_merge import merge_lineage
from sail_core.export.model_card import CardFacts, base_license, build_card, load_snippet
from sail_core.export.pipeline_folder import (
    KOHYA_FILE,
    check_exportable,
    is_pixel,
    pipeline_name,
    write_full,
    write_fused,
    write_lora,
    write_pixel_fused,
)
from sail_core.export.run_contents import FinishedRun, fetch_weights
from sail_core.io.atomic import atomic_dir, write_text
from sail_core.io.paths import local_path

CARD_FILE, SAMPLES_FILE, INFO_FILE = "README.md", "samples.png", "sail_export.json"


@dataclass(frozen=True)
class ExportResult:
    folder: Path
    label: str
    kind: str
    """``lora``, ``fused`` or ``full``."""
    chosen_by: str
    snippet: str
    """The card's load snippet (what to run to use the export)."""


def check_destination(out: Path, run: FinishedRun, overwrite: bool) -> None:
    """Refuse an existing folder unless ``overwrite``, and any folder that is (or holds) the run itself."""
    target, root = out.resolve(), run.root.resolve()
    if target == root or root.is_relative_to(target):
        raise InputError("is the run directory or holds it: export to another folder", file=out)
    if out.exists() and not overwrite:
        raise InputError("already exists: choose another --out, or pass --overwrite to replace it", file=out)


def export_model(run: FinishedRun, out: str | Path, options: ExportConfig, *, overwrite: bool = False,
                 location: str | None = None) -> ExportResult:
    """Write the model ``options.model`` of ``run`` to ``out``. ``location``: what the card's snippet loads
    (a Hub repo id the folder will be uploaded to; default ``out`` as given)."""
    out = Path(out)
    chosen = run.choose(options.model, options.metric)
    model, config = chosen.model, run.config.model
    checkpoint = model.ref.checkpoint
    check_exportable(config)
    if checkpoint.kind == "base":
        raise InputError(f"{model.label} is the base model itself: nothing to export", parameter="--model")
    if checkpoint.kind == "full" and (options.fuse or options.format != "diffusers"):
        raise InputError("--fuse and --format kohya apply to LoRA runs: this run fine-tuned the whole UNet, whose "
                         "export is a complete pipeline already", parameter="--fuse" if options.fuse else "--format")
    check_destination(out, run, overwrite)
    fetch_weights(run, model)
    fuse = options.fuse or is_pixel(config)  # a pixel-space pipeline has no LoRA loader: always fused
    kind = "full" if checkpoint.kind == "full" else ("fused" if fuse else "lora")
    rank = None
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if checkpoint.kind == "full":
            write_full(tmp, config, run.root / checkpoint.weights, options.dtype)
        else:
            merged = merge_lineage([run.root / a for a in checkpoint.adapters])
            rank = merged.rank
            if is_pixel(config):
                write_pixel_fused(tmp, config, merged, options.dtype)
            elif options.fuse:
                write_fused(tmp, config, merged, options.dtype)
            else:
                write_lora(tmp, config, merged, options.dtype, kohya=options.format == "kohya")
        samples = run.report / SAMPLES_FILE
        if samples.is_file():
            shutil.copyfile(samples, tmp / SAMPLES_FILE)
        source = local_path(config.source)
        facts = CardFacts(
            config=run.config, run_name=run.name, label=model.label, chosen_by=chosen.reason, kind=kind,
            location=location or str(out), base_source=config.source,
            license=base_license(config.source, source if Path(source).is_dir() else None),
            metrics=[(m.label, m.metrics) for m in run.models], primary_metric=chosen.metric or run.primary_metric,
            dtype=options.dtype, pipeline_class=pipeline_name(config), lora_rank=rank,
            kohya_file=KOHYA_FILE if kind == "lora" and options.format == "kohya" else None,
            samples=SAMPLES_FILE if samples.is_file() else None)
        write_text(tmp / CARD_FILE, build_card(facts))
        info = {**({"run": run.name} if run.name else {}), "model": model.label, "kind": kind,
                "chosen_by": chosen.reason,
                "metric": chosen.metric, "identity": model.ref.identity, "lora_rank": rank,
                "format": options.format, "dtype": options.dtype,
                "metrics": {m.label: m.metrics for m in run.models}}
        write_text(tmp / INFO_FILE, json.dumps(info, indent=2))
    return ExportResult(out, model.label, kind, chosen.reason, load_snippet(facts))
