"""Finding scorer weights (local file, local folder or Hub repository) and reading them safely.

Only data is ever deserialised: safetensors, or ``torch.load(..., weights_only=True)``, which
refuses pickles that would run code. A checkpoint that needs full unpickling is rejected with a
message saying how to convert it, never loaded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch

from sail_core.errors import InputError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(source: str | Path) -> bool:
    return isinstance(source, str) and not Path(source).exists() and bool(_HUB_ID.match(source))


def resolve_file(source: str | Path, filename: str, *, parameter: str) -> Path:
    """``source`` as a file, ``source/filename`` for a folder, or ``filename`` from a Hub repository.

    Hub downloads go through the local cache and honour HF_HUB_OFFLINE, so an offline machine with
    a warm cache works and a cold one gets an error naming what to download.
    """
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        candidate = path / filename
        if not candidate.is_file():
            raise InputError(f"folder has no {filename!r}", file=path, parameter=parameter)
        return candidate
    if not is_hub_id(str(source)):
        raise InputError("no such file or folder (and not a Hub repository id)", file=path, parameter=parameter)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(str(source), filename))
    except Exception as exc:  # the hub client raises many unrelated types for "not available"
        raise InputError(
            f"cannot get {filename!r} from Hub repository {source!r} ({type(exc).__name__}: {exc}); "
            "offline, download it elsewhere and pass the local file or folder",
            parameter=parameter,
        ) from exc


def load_state_dict(path: str | Path, *, parameter: str) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: safetensors, or a weights-only torch pickle.

    A ``{"state_dict": ...}`` wrapper (HPSv2's compressed checkpoints) is unwrapped and a
    DistributedDataParallel ``module.`` prefix is removed, so callers see plain parameter names.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint file does not exist", file=path, parameter=parameter)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError, or a corrupt/unknown archive
            raise InputError(
                f"checkpoint cannot be read as weights only ({type(exc).__name__}: {exc}); only tensors are "
                "accepted. Re-save it as safetensors from a trusted environment",
                file=path, parameter=parameter,
            ) from exc
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise InputError(f"checkpoint holds a {type(state).__name__}, not a state dict", file=path,
                         parameter=parameter)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"checkpoint entry {key!r} is a {type(value).__name__}, not a tensor", file=path,
                             parameter=parameter)
        out[key[len("module."):] if key.startswith("module.") else key] = value
    return out


def pretrained_error(kind: str, source: str | Path, exc: Exception, parameter: str) -> InputError:
    return InputError(
        f"cannot load {kind} from {str(source)!r} ({type(exc).__name__}: {exc}); offline, pass a local folder "
        "holding the downloaded files",
        parameter=parameter,
    )
