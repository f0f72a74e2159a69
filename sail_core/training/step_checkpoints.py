"""Step checkpoints of a training run, in safetensors only.

``steps/step-000100/`` holds ``trainable.safetensors`` (the trainable parameters by name, float32),
``optimizer.safetensors`` (every optimizer-state tensor, with the non-tensor state and the
parameter groups as JSON metadata), ``state.json`` (step, schedule state, metrics so far, and any
other JSON state a loop needs to resume, such as random-generator states) and, when a loop keeps
tensors beside its parameters (an EMA's shadow weights, a torch generator's state),
``extra.safetensors``; last, ``sha256.json``, the SHA-256 of each of those files. The
directory is renamed into place when complete, so a checkpoint on disk is always whole; the hashes
catch what happens to it later (a flipped byte, a truncated or deleted file, a copy cut short):
:func:`newest_good_checkpoint` resumes from the newest checkpoint whose files still have them and
sets the damaged newer ones aside. No pickle is involved: nothing here can execute code when loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sail_core.io.atomic import atomic_dir, sha256_file
from sail_core.io.tensors import read_metadata, read_tensors, write_tensors

STEP_PREFIX = "step-"
DIVERGED_DIR = "diverged"
DAMAGED_DIR = "damaged"
EXTRA_FILE = "extra.safetensors"
HASHES_FILE = "sha256.json"
REQUIRED_FILES = ("trainable.safetensors", "optimizer.safetensors", "state.json")


@dataclass(frozen=True)
class TrainingState:
    step: int
    lr_schedule: dict[str, Any]
    metrics: list[dict[str, float]]
    extra: dict[str, Any] = field(default_factory=dict)
    """JSON state beyond the optimizer's that the loop needs to continue exactly (e.g. numpy RNG state)."""


def _named_trainable(module: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {n: p for n, p in module.named_parameters() if p.requires_grad}


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}/{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        pid, key = name.split("/", 1)
        state.setdefault(int(pid), {})[key] = tensor
    for pid, entries in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(entries)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    steps_dir: str | Path,
    module: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainingState,
    keep: int,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    path = Path(steps_dir) / f"{STEP_PREFIX}{state.step:06d}"
    with atomic_dir(path, overwrite=True) as tmp:
        write_tensors(tmp / "trainable.safetensors",
                      {n: p.detach().float() for n, p in _named_trainable(module).items()})
        tensors, meta = _flatten_optimizer(optimizer)
        write_tensors(tmp / "optimizer.safetensors", tensors, metadata={"optimizer": json.dumps(meta)})
        if extra_tensors:
            write_tensors(tmp / EXTRA_FILE, {n: t.detach().contiguous() for n, t in extra_tensors.items()})
        (tmp / "state.json").write_text(json.dumps({
            "step": state.step, "lr_schedule": state.lr_schedule, "metrics": state.metrics, "extra": state.extra,
        }))
        # last: what every other file must hash to when a run resumes from it
        (tmp / HASHES_FILE).write_text(json.dumps({f.name: sha256_file(f) for f in sorted(tmp.iterdir())
                                                   if f.is_file() and not f.name.startswith(".")}, indent=1))
    for old in list_checkpoints(steps_dir)[:-keep]:
        shutil.rmtree(old)
    return path


def list_checkpoints(steps_dir: str | Path) -> list[Path]:
    steps_dir = Path(steps_dir)
    if not steps_dir.exists():
        return []
    return sorted(p for p in steps_dir.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX)
                  and (p / "state.json").exists())


def step_checkpoint_dirs(steps_dir: str | Path) -> list[Path]:
    """Every step directory, oldest first, whole or not (one whose ``state.json`` is gone is damaged, not
    absent)."""
    steps_dir = Path(steps_dir)
    if not steps_dir.exists():
        return []
    return sorted(p for p in steps_dir.iterdir() if p.is_dir() and p.name.startswith(STEP_PREFIX))


def checkpoint_problem(path: str | Path) -> str | None:
    """Why the checkpoint at ``path`` is not to be resumed from (a file missing, or not the bytes its
    recorded SHA-256 says), or None when every file is as it was saved."""
    path = Path(path)
    try:
        recorded = json.loads((path / HASHES_FILE).read_text())
    except FileNotFoundError:
        return f"{path / HASHES_FILE} is missing"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{path / HASHES_FILE} cannot be read ({type(exc).__name__})"
    if not isinstance(recorded, dict) or not set(REQUIRED_FILES) <= set(recorded):
        return f"{path / HASHES_FILE} does not list {', '.join(REQUIRED_FILES)}"
    for name, sha256 in sorted(recorded.items()):
        file = path / name
        if Path(name).name != name or name.startswith("."):
            return f"{path / HASHES_FILE} names {name!r}, which is not a file of the checkpoint"
        if not file.is_file():
            return f"{file} is missing"
        if sha256_file(file) != sha256:
            return f"{file} does not have its recorded SHA-256 (damaged or changed after it was saved)"
    return None


@dataclass(frozen=True)
class Resumable:
    """Where a training resumes: the newest intact checkpoint (None: from the start), and the newer
    ones that were damaged, each with what was wrong and where it was moved."""

    checkpoint: Path | None
    damaged: tuple[tuple[str, str, Path | None], ...] = ()
    """``(checkpoint name, problem, where it went)``; where is None when this process moved nothing."""

    def describe(self) -> list[str]:
        """One line per damaged checkpoint, saying what the training resumes from instead."""
        start = f"resuming from {self.checkpoint.name}" if self.checkpoint else "starting from the initial weights"
        return [f"step checkpoint {name} is damaged: {problem}; {start}"
                + (f" (the damaged one is kept in {where})" if where else "") for name, problem, where in self.damaged]


def newest_good_checkpoint(steps_dir: str | Path, set_aside: bool = True) -> Resumable:
    """The newest checkpoint whose files have their recorded hashes. Newer, damaged ones are moved to
    ``steps/damaged/`` (kept for inspection, never resumed from, never counted among the kept ones) when
    ``set_aside`` (the main process of several: the others only look)."""
    steps_dir = Path(steps_dir)
    damaged = []
    for path in reversed(step_checkpoint_dirs(steps_dir)):
        problem = checkpoint_problem(path)
        if problem is None:
            return Resumable(path, tuple(damaged))
        damaged.append((path.name, problem, set_aside_damaged(path) if set_aside else None))
    return Resumable(None, tuple(damaged))


def set_aside_damaged(path: str | Path) -> Path:
    """Move a damaged checkpoint to ``steps/damaged/`` (kept for inspection, never resumed from)."""
    path = Path(path)
    where = path.parent / DAMAGED_DIR / f"{path.name}-{time.time_ns()}"
    where.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, where)
    return where


def set_aside_from(steps_dir: str | Path, first_step: int) -> list[Path]:
    """Move the checkpoints of steps ≥ ``first_step`` to ``steps/diverged/`` (kept for inspection, never
    resumed from); return where they went."""
    moved = []
    for path in list_checkpoints(steps_dir):
        if int(path.name.removeprefix(STEP_PREFIX)) >= first_step:
            target = Path(steps_dir) / DIVERGED_DIR / f"{path.name}-{time.time_ns()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            moved.append(target)
    return moved


def load_checkpoint(path: str | Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainingState:
    """Restore trainable parameters and optimizer state in place; return the saved training state."""
    path = Path(path)
    params = _named_trainable(module)
    saved = read_tensors(path / "trainable.safetensors")
    if set(saved) != set(params):
        missing, extra = set(params) - set(saved), set(saved) - set(params)
        raise ValueError(f"checkpoint {path} does not match the model (missing {sorted(missing)[:3]}, "
                         f"unexpected {sorted(extra)[:3]})")
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(saved[name].to(param.dtype))
    meta = json.loads(read_metadata(path / "optimizer.safetensors")["optimizer"])
    optimizer.load_state_dict(_unflatten_optimizer(read_tensors(path / "optimizer.safetensors"), meta))
    data = json.loads((path / "state.json").read_text())
    return TrainingState(step=data["step"], lr_schedule=data["lr_schedule"], metrics=data["metrics"],
                         extra=data.get("extra", {}))


def load_extra_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint keeps beside the parameters (empty if it keeps none)."""
    extra = Path(path) / EXTRA_FILE
    return read_tensors(extra) if extra.exists() else {}
