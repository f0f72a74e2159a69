"""A DPO trainer on the ``seeded`` run that can be interrupted after a given step, as a killed process."""

from __future__ import annotations

from pathlib import Path

from sail_core.config import TrainConfig
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import Denoisers, load_for_training
from sail_core.training.pair_dataset import PairDataset
from sail_core.training.trainer import DpoTrainer


class Interrupt(Exception):
    pass


def trainer(seeded, steps_dir: Path, train: TrainConfig, stop_after: int | None = None,
            mode: str = "full") -> tuple[DpoTrainer, Denoisers]:
    """A trainer from the base weights into ``steps_dir``; raises :class:`Interrupt` once step ``stop_after``
    has been computed (before its checkpoint)."""
    config, bundle, layout, seed = seeded
    model_config = config.model.model_copy(update={"train_mode": mode})
    denoisers = load_for_training(model_config, layout.root, UnetCheckpoint(), bundle.device)
    dataset = PairDataset.from_file(seed.pairs.resolve(layout.root), layout.root)

    def on_step(step, total, metrics):
        if stop_after is not None and step == stop_after:
            raise Interrupt

    return DpoTrainer(bundle, denoisers, dataset, train, steps_dir, on_step=on_step), denoisers
