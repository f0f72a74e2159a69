"""Stage: Diffusion-DPO from ``init`` with ``init`` as the frozen reference.

Round 0 trains the pretrained base on the human seed pairs; round i > 0 trains the previous
round's model on the round's mixed set. Step checkpoints live in ``out_dir/steps``: rerunning the
stage into the same directory resumes from the last one.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from sail_core.config import SailConfig, TrainConfig
from sail_core.data.pairs import PairDataset
from sail_core.io.tables import read_table, write_table
from sail_core.models.bundle import ModelBundle
from sail_core.models.denoisers import load_for_training, save_trained
from sail_core.models.lineage import UnetCheckpoint
from sail_core.stages.layout import Artifact, RunLayout
from sail_core.stages.records import ModelRecord
from sail_core.training.trainer import DpoTrainer, ProgressFn


def train_config(config: SailConfig, round_index: int) -> TrainConfig:
    return config.seed_train if round_index == 0 else config.round_train


def train_model(
    config: SailConfig,
    bundle: ModelBundle,
    layout: RunLayout,
    pairs: Artifact,
    init: UnetCheckpoint,
    round_index: int,
    out_dir: Path,
    on_step: ProgressFn | None = None,
) -> ModelRecord:
    spec_file = out_dir / "model.json"
    metrics_file = out_dir / "train_metrics.parquet"
    resumed_from: int | None = None
    if not spec_file.exists():
        train = train_config(config, round_index)
        denoisers = load_for_training(config.model, layout.root, init, bundle.device, seed=train.seed)
        dataset = PairDataset.from_file(pairs.resolve(layout.root), layout.root)
        trainer = DpoTrainer(bundle, denoisers, dataset, train, out_dir / "steps", on_step=on_step)
        result = trainer.train()
        accelerator = trainer.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:  # under accelerate launch, one process writes the model
            checkpoint = save_trained(config.model, denoisers, init, out_dir, layout.root,
                                      label=f"round-{round_index}")
            write_table(metrics_file, pa.Table.from_pylist(result.metrics), overwrite=True)
            checkpoint.save(spec_file)  # written last: its presence marks the stage finished
        accelerator.wait_for_everyone()
        resumed_from = result.resumed_from
    checkpoint = UnetCheckpoint.load(spec_file)
    weights = checkpoint.weights if checkpoint.kind == "full" else checkpoint.adapters[-1]
    rows = read_table(metrics_file).to_pylist()
    return ModelRecord(
        round=round_index, checkpoint=checkpoint, weights=Artifact.of(layout.root, layout.root / weights),
        metrics=Artifact.of(layout.root, metrics_file), steps=len(rows),
        resumed_from=len(rows) if resumed_from is None else resumed_from,
        final_metrics={k: float(v) for k, v in rows[-1].items()},
    )
