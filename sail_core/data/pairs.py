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
    ("draws", pa.int32()),
    ("stop_reason", pa.string()),
])
PAIR_COLUMNS = tuple(PAIR_SCHEMA.names)
RANKING_COLUMNS = ("draws", "stop_reason")
"""Self pairs only (null for other sources): the (t, ε) draws each of the prompt's candidates got and why
its ranking stopped (``sail_core.algorithm.sequential``). Tables written before these columns read as null."""
REQUIRED_PAIR_COLUMNS = tuple(c for c in PAIR_COLUMNS if c not in RANKING_COLUMNS)

SOURCE_HUMAN = "human"
SOURCE_SELF = "self"
SOURCE_REAL_GENERATED = "real-generated"
"""RealAlign: a real image ≻ the current model's sample for its caption."""
SOURCE_REAL_PERTURBED = "real-perturbed"
"""RealAlign: a real image ≻ a perturbed copy of itself."""


def pair_table(rows: Sequence[dict]) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=PAIR_SCHEMA)


def read_pairs(path: str | Path) -> pa.Table:
    table = read_table(path, required=REQUIRED_PAIR_COLUMNS)
    for name in RANKING_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, PAIR_SCHEMA.field(name).type))
    return table.select(PAIR_COLUMNS).cast(PAIR_SCHEMA)
