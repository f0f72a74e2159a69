"""The preference-pair table every training set uses, whatever the pairs' source (pyarrow only: no torch).

One Parquet row per pair. Tensors are not in the table: ``*_file``/``*_row`` point into safetensors
shards under the run directory (latents of human images cached once, latents of self-generated
candidates as generated, prompt conditionings encoded once), so mixing sources copies no tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from sail_core.io.tables import read_table

PAIR_SCHEMA = pa.schema([
    ("pair_id", pa.string()),
    ("source", pa.string()),
    ("round", pa.int32()),
    ("prompt", pa.string()),
    ("cond_file", pa.string()),
    ("cond_row", pa.int64()),
    ("w_file", pa.string()),
    ("w_row", pa.int64()),
    ("l_file", pa.string()),
    ("l_row", pa.int64()),
    ("reward_w", pa.float64()),
    ("reward_l", pa.float64()),
    ("p_win", pa.float64()),
])
PAIR_COLUMNS = tuple(PAIR_SCHEMA.names)

SOURCE_HUMAN = "human"
SOURCE_SELF = "self"
SOURCE_REAL_GENERATED = "real-generated"
"""RealAlign: a real image ≻ the current model's sample for its caption."""
SOURCE_REAL_PERTURBED = "real-perturbed"
"""RealAlign: a real image ≻ a perturbed copy of itself."""


def pair_table(rows: Sequence[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=PAIR_SCHEMA)


def read_pairs(path: str | Path) -> pa.Table:
    return read_table(path, required=PAIR_COLUMNS).select(PAIR_COLUMNS).cast(PAIR_SCHEMA)
