"""Random access to a pair table's tensors: (winner latent, loser latent, conditioning) by pair index."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import torch

from sail_core.data.pairs import read_pairs
from sail_core.io.tensors import ShardReader
from sail_core.models.conditioning import Conditioning


class PairDataset:
    """Random access to (winner latent, loser latent, conditioning) by pair index."""

    def __init__(self, table: pa.Table, run_dir: str | Path) -> None:
        self.table = table
        columns = table.to_pydict()
        self.cond_file, self.cond_row = columns["cond_file"], columns["cond_row"]
        self.w_file, self.w_row = columns["w_file"], columns["w_row"]
        self.l_file, self.l_row = columns["l_file"], columns["l_row"]
        self.sources = columns["source"]
        self._latents = ShardReader(run_dir, "latents")
        self._embeds = ShardReader(run_dir, "prompt_embeds")
        self._pooled = ShardReader(run_dir, "pooled")
        self._has_pooled: bool | None = None

    @staticmethod
    def from_file(path: str | Path, run_dir: str | Path) -> PairDataset:
        return PairDataset(read_pairs(path), run_dir)

    def __len__(self) -> int:
        return self.table.num_rows

    def batch(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, Conditioning]:
        pick = lambda col: [col[i] for i in indices]  # noqa: E731
        winners = self._latents.gather(pick(self.w_file), pick(self.w_row)).float()
        losers = self._latents.gather(pick(self.l_file), pick(self.l_row)).float()
        files, rows = pick(self.cond_file), pick(self.cond_row)
        embeds = self._embeds.gather(files, rows).float()
        if self._has_pooled is None:
            self._has_pooled = "pooled" in self._embeds._handle(files[0]).keys()
        pooled = self._pooled.gather(files, rows).float() if self._has_pooled else None
        return winners, losers, Conditioning(embeds, pooled)
