"""Diffusion-DPO over several GPUs of one machine: the train stage under ``accelerate launch``.

The task writes the stage's inputs to ``launch.json`` in the stage directory and starts one process
per GPU running ``python -m sail_cli.train_worker``; each builds the same trainer (accelerate wraps
it in DDP), the main process writes the model and ``model.json``, and the task then reads the
finished stage back. Step checkpoints make a relaunch after a lost worker resume, not restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from sail_core.models.bundle import cached_bundle
from sail_core.stages.keys import ModelRef, StageKey
from sail_core.stages.layout import Artifact
from sail_core.stages.records import ModelRecord
from sail_core.stages.train import train_model
from tasks.context import RunContext


def train_in_subprocesses(ctx: RunContext, key: StageKey, pairs: Artifact, init: ModelRef, round_index: int,
                          out_dir: Path) -> ModelRecord:
    processes = ctx.config.runtime.train_processes
    launch = out_dir / "launch.json"
    launch.write_text(json.dumps({
        "run_dir": ctx.run_dir, "config": ctx.config.model_dump(mode="json"), "pairs": pairs.model_dump(),
        "init": init.checkpoint.model_dump(mode="json"), "round_index": round_index, "out_dir": str(out_dir),
    }))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
               "--num_machines", "1", "--mixed_precision", ctx.config.round_train.mixed_precision]
    command += ["--multi_gpu"] if torch.cuda.is_available() else ["--cpu"]
    command += ["-m", "sail_cli.train_worker", str(launch)]
    subprocess.run(command, check=True)
    # the workers finished the stage: this call finds model.json and only reads the record back
    return train_model(ctx.config, cached_bundle(ctx.config.model, "cpu"), ctx.layout, pairs, init.checkpoint,
                       round_index, out_dir)
