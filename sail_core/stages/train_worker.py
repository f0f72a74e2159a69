"""One process of a multi-process training stage (``python -m sail_core.stages.train_worker launch.json``,
started by ``accelerate launch``; see ``sail_core.training.launch``). The processes inherit the
launching process's environment."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from sail_core.config import SailConfig
from sail_core.io.remote import RunStore
from sail_core.run.layout import RunLayout
from sail_core.run.stage import StageContext
from sail_core.stages.train import TrainInputs, train_in_this_process


def main(launch_file: str) -> None:
    spec = json.loads(Path(launch_file).read_text())
    config = SailConfig.model_validate(spec["config"])
    if torch.cuda.is_available():  # each process trains on its own GPU
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        config = config.model_copy(update={"runtime": config.runtime.model_copy(update={"device": device})})
    store = RunStore(spec["store"], local=spec["run_dir"]) if spec.get("store") else None
    ctx = StageContext(config, RunLayout(spec["run_dir"]), Path(spec["out_dir"]), store=store)
    train_in_this_process(ctx, TrainInputs.model_validate(spec["inputs"]))


if __name__ == "__main__":
    main(sys.argv[1])
