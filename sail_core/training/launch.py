"""Diffusion-DPO over several GPUs of one machine: a training stage under ``accelerate launch``.

:func:`train_in_processes` writes the work's description to a temporary ``launch.json`` (outside the
run directory: it holds absolute paths, and a run directory holds none, so that it can move) and
starts one process per GPU running ``worker_module`` (``python -m <worker_module> launch.json``);
each builds the same trainer (accelerate wraps it in DDP) and the main process writes the model.
Step checkpoints make a relaunch after a lost worker resume, not restart.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from sail_core.errors import InputError


def train_in_processes(launch: dict[str, Any], out_dir: Path, processes: int, mixed_precision: str,
                       worker_module: str) -> None:
    if torch.cuda.is_available() and processes > torch.cuda.device_count():
        # one machine only (num_machines 1): an SDXL round's DPO is about a tenth of its GPU time on 8 GPUs
        # (README, "DPO on one machine"), so the pool's other hosts only generate and rank
        raise InputError(f"{processes} training processes but this host has {torch.cuda.device_count()} GPUs; "
                         "Diffusion-DPO runs on the GPUs of one machine", parameter="runtime.train_processes")
    with tempfile.TemporaryDirectory(prefix="sail-launch-") as folder:
        launch_file = Path(folder) / "launch.json"
        launch_file.write_text(json.dumps(launch))
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes),
                   "--num_machines", "1", "--mixed_precision", mixed_precision]
        command += ["--multi_gpu"] if torch.cuda.is_available() else ["--cpu"]
        command += ["-m", worker_module, str(launch_file)]
        subprocess.run(command, check=True)
