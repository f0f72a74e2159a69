"""Stage: Diffusion-DPO from ``init`` with ``init`` as the frozen reference.

Iteration 0 trains the pretrained base on the human seed pairs; round i > 0 trains the previous
round's model on the round's mixed set (the paper: "the previous model as both init and reference").
Step checkpoints live in ``out_dir/steps``: rerunning the stage into the same directory resumes from
the last one (with a remote store, the latest is pushed as it is saved, so any host resumes from
it); the finished stage removes them. With ``runtime.train_processes > 1`` the work runs under ``accelerate launch``.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import Field

from sail_core.config import SailConfig, TrainConfig
from sail_core.io.tables import read_table, write_table
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import load_for_training, save_trained
from sail_core.run.keys import model_settings
from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef, trained_model
from sail_core.run.records import ModelRecord
from sail_core.run.stage import Stage, StageContext, StageInputs, round_group
from sail_core.training.launch import train_in_processes
from sail_core.training.pair_dataset import PairDataset
from sail_core.training.trainer import DpoTrainer


class TrainInputs(StageInputs):
    round_index: int = Field(ge=0)
    """0: seed DPO (iteration 0); i ≥ 1: SAIL round i."""
    pairs: Artifact
    """The pair table to train on: the seed pairs, or the round's mixed set."""
    init: ModelRef
    """Both the initialisation and the frozen reference."""


def train_config(config: SailConfig, round_index: int) -> TrainConfig:
    return config.seed_train if round_index == 0 else config.round_train


def _spec_file(ctx: StageContext):
    return ctx.out_dir / "model.json"


class CheckpointPublisher:
    """A remote run keeps the latest step checkpoint in its store (and only that one), so training resumes
    on another host; pushed at most every ``interval`` seconds (and the first one at once)."""

    def __init__(self, ctx: StageContext, interval: float) -> None:
        self.ctx, self.interval, self.last = ctx, interval, -math.inf

    def __call__(self, path: Path) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.ctx.publish([path], prune=path.parent)
            self.last = now


def train_in_this_process(ctx: StageContext, inputs: TrainInputs) -> int:
    """Train and (on the main process) write the model; ``model.json``, written last, marks it done.
    Returns the step training resumed from (0 when it started afresh)."""
    config, layout = ctx.config, ctx.layout
    train = train_config(config, inputs.round_index)
    denoisers = load_for_training(config.model, layout.root, inputs.init.checkpoint, ctx.device, seed=train.seed)
    dataset = PairDataset.from_file(inputs.pairs.resolve(layout.root), layout.root)
    trainer = DpoTrainer(ctx.bundle, denoisers, dataset, train, ctx.out_dir / "steps", on_step=ctx.progress,
                         on_checkpoint=CheckpointPublisher(ctx, config.runtime.checkpoint_push_seconds))
    result = trainer.train()
    accelerator = trainer.accelerator
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # under accelerate launch, one process writes the model
        checkpoint = save_trained(config.model, denoisers, inputs.init.checkpoint, ctx.out_dir, layout.root,
                                  label=f"round-{inputs.round_index}")
        write_table(ctx.out_dir / "train_metrics.parquet", pa.Table.from_pylist(result.metrics), overwrite=True)
        checkpoint.save(_spec_file(ctx))
    accelerator.wait_for_everyone()
    return result.resumed_from


def train_model(ctx: StageContext, inputs: TrainInputs) -> ModelRecord:
    resumed_from: int | None = None  # unknown when the model was already written (or by other processes)
    if not _spec_file(ctx).exists():
        processes = ctx.config.runtime.train_processes
        if processes > 1:
            launch = {"config": ctx.config.model_dump(mode="json"), "run_dir": str(ctx.layout.root),
                      "inputs": inputs.model_dump(mode="json"), "out_dir": str(ctx.out_dir),
                      "store": ctx.store.location if ctx.store is not None and ctx.store.remote else None}
            train_in_processes(launch, ctx.out_dir, processes,
                               train_config(ctx.config, inputs.round_index).mixed_precision,
                               worker_module="sail_core.stages.train_worker")
        else:
            resumed_from = train_in_this_process(ctx, inputs)
    # step checkpoints are resume state: a finished training is its model and metrics
    shutil.rmtree(ctx.out_dir / "steps", ignore_errors=True)
    checkpoint = UnetCheckpoint.load(_spec_file(ctx))
    root = ctx.layout.root
    weights = Artifact.of(root, root / (checkpoint.weights if checkpoint.kind == "full" else checkpoint.adapters[-1]))
    metrics_file = ctx.out_dir / "train_metrics.parquet"
    rows = read_table(metrics_file).to_pylist()
    return ModelRecord(
        round=inputs.round_index, model=trained_model(checkpoint, weights, inputs.init), weights=weights,
        metrics=Artifact.of(root, metrics_file), steps=len(rows),
        resumed_from=len(rows) if resumed_from is None else resumed_from,
        final_metrics={k: float(v) for k, v in rows[-1].items()},
    )


def training_reads(ctx: StageContext, inputs: TrainInputs) -> Iterator[list[str]]:
    """The latents and conditioning files the pair table points into (seed, generation, real anchors)."""
    table = read_table(inputs.pairs.resolve(ctx.layout.root), columns=["cond_file", "w_file", "l_file"])
    yield sorted({f for column in table.columns for f in column.to_pylist()})


GUARD_SETTINGS = frozenset({"divergence_loss_spike", "divergence_grad_spike", "divergence_weight_growth"})
"""Not in the key: they decide whether a run stops, never what a finished run computed."""


def train_settings(config: SailConfig, inputs: TrainInputs) -> dict[str, Any]:
    model = config.model.model_dump(mode="json")
    return {"model": model_settings(config), "train_mode": model["train_mode"], "lora": model["lora"],
            "reference_dtype": model["reference_dtype"],
            "train": train_config(config, inputs.round_index).model_dump(mode="json", exclude=set(GUARD_SETTINGS)),
            "processes": config.runtime.train_processes}


TRAIN = Stage(
    name="train", inputs=TrainInputs, record=ModelRecord, run=train_model,
    group=lambda inputs: round_group(inputs.round_index), settings=train_settings, reads=training_reads,
    code=("sail_core.algorithm.dpo_loss", "sail_core.algorithm.noising", "sail_core.training.trainer",
          "sail_core.training.optim", "sail_core.training.pair_dataset", "sail_core.models.denoisers"),
    description="Diffusion-DPO from the previous model, which is also the reference",
)
