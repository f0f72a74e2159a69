"""Tensor shards in safetensors: written atomically, read memory-mapped, gathered by row.

A shard holds named tensors whose first dimension is the row (e.g. ``latents`` [n, C, H, W] or
``prompt_embeds`` [n, L, D]). Tables refer to rows by ``(file, row)``, so that a dataset can mix
rows from many shards (human seed latents, self-generated candidates) without copying tensors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sail_core.errors import InputError
from sail_core.io.atomic import atomic_path


def write_tensors(
    path: str | Path,
    tensors: Mapping[str, torch.Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> Path:
    contiguous = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(contiguous, str(tmp), metadata=dict(metadata) if metadata else None)
    return Path(path)


def read_tensors(path: str | Path, names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.exists():
        raise InputError("tensor file does not exist", file=path)
    with safe_open(str(path), framework="pt") as handle:
        keys = list(handle.keys()) if names is None else list(names)
        missing = [k for k in keys if k not in handle.keys()]
        if missing:
            raise InputError(f"missing tensors {missing}", file=path)
        return {k: handle.get_tensor(k) for k in keys}


def read_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


class ShardReader:
    """Gathers rows of one named tensor from many shards; each shard is opened once and memory-mapped."""

    def __init__(self, root: str | Path, name: str) -> None:
        self.root = Path(root)
        self.name = name
        self._handles: dict[str, object] = {}

    def _handle(self, file: str):
        handle = self._handles.get(file)
        if handle is None:
            path = self.root / file
            if not path.exists():
                raise InputError("tensor shard referenced by a table does not exist", file=path)
            handle = safe_open(str(path), framework="pt")
            if self.name not in handle.keys():
                raise InputError(f"shard has no tensor {self.name!r}", file=path)
            self._handles[file] = handle
        return handle

    def row_count(self, file: str) -> int:
        return self._handle(file).get_slice(self.name).get_shape()[0]

    def gather(self, files: Sequence[str], rows: Sequence[int]) -> torch.Tensor:
        """Rows ``rows[i]`` of shard ``files[i]``, stacked in the given order."""
        if len(files) != len(rows):
            raise ValueError("files and rows must have the same length")
        by_file: dict[str, list[int]] = {}
        for position, file in enumerate(files):
            by_file.setdefault(file, []).append(position)
        out: list[torch.Tensor | None] = [None] * len(rows)
        for file, positions in by_file.items():
            tensor_slice = self._handle(file).get_slice(self.name)
            n_rows = tensor_slice.get_shape()[0]
            for p in positions:
                row = int(rows[p])
                if not 0 <= row < n_rows:
                    raise InputError(f"row {row} out of range (shard has {n_rows} rows)", file=self.root / file)
                # a one-row slice copies only that row out of the memory map
                out[p] = tensor_slice[row : row + 1][0]
        return torch.stack(out)  # type: ignore[arg-type]
