"""One process of a multi-GPU Diffusion-DPO stage (started by ``accelerate launch``; see tasks/launch.py)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from sail_cli.environment import apply_defaults


def main(launch_file: str) -> None:
    apply_defaults()
    from sail_core.config import SailConfig
    from sail_core.models.bundle import load_bundle
    from sail_core.models.lineage import UnetCheckpoint
    from sail_core.stages.layout import Artifact, RunLayout
    from sail_core.stages.train import train_model

    spec = json.loads(Path(launch_file).read_text())
    config = SailConfig.model_validate(spec["config"])
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", rank) if torch.cuda.is_available() else torch.device("cpu")
    train_model(config, load_bundle(config.model, device), RunLayout(spec["run_dir"]),
                Artifact.model_validate(spec["pairs"]), UnetCheckpoint.model_validate(spec["init"]),
                spec["round_index"], Path(spec["out_dir"]))


if __name__ == "__main__":
    main(sys.argv[1])
