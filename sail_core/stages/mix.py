"""Stage of a round: the mixed training set (α self pairs, 1 − α human seed pairs; with RealAlign also
real ≻ generated and real ≻ perturbed pairs, each source at its ``mixup`` fraction)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from sail_core.config import SailConfig
from sail_core.data.mixup import mix_pairs, mixup_fractions
from sail_core.data.pairs import (
    PAIR_COLUMNS,
    PAIR_SCHEMA,
    SOURCE_HUMAN,
    SOURCE_REAL_GENERATED,
    SOURCE_REAL_PERTURBED,
    SOURCE_SELF,
    read_pairs,
)
from sail_core.errors import InputError
from sail_core.io.tables import write_table
from sail_core.stages.layout import Artifact, RunLayout
from sail_core.stages.records import MixRecord, PairsRecord, SeedRecord


def mix_round(config: SailConfig, layout: RunLayout, seed: SeedRecord | None, pairs: PairsRecord | None,
              out_dir: Path, *, real_generated: pa.Table | None = None, real_perturbed: pa.Table | None = None,
              round_index: int | None = None) -> MixRecord:
    """Mix the given sources by ``mixup``'s fractions. ``seed``/``pairs`` may be None when their fraction
    is 0 (pure RealAlign: alpha = 0 and no human pairs; then pass ``round_index``)."""
    # RealAlign: every source is optional, but a source with a positive fraction must be given
    given = {SOURCE_HUMAN: seed.pairs if seed else None, SOURCE_SELF: pairs.pairs if pairs else None}
    tables = {s: read_pairs(a.resolve(layout.root)) for s, a in given.items() if a is not None}
    for source, table in ((SOURCE_REAL_GENERATED, real_generated), (SOURCE_REAL_PERTURBED, real_perturbed)):
        if table is not None:
            tables[source] = table.select(PAIR_COLUMNS).cast(PAIR_SCHEMA)
    fractions = mixup_fractions(config.mixup)
    missing = [s for s, f in fractions.items() if f > 0 and s not in tables]
    if missing:
        raise InputError(f"mixup gives {missing} a positive fraction but no such pairs were passed", parameter="mixup")
    round_index = pairs.round if pairs is not None else round_index
    if round_index is None:
        raise ValueError("mix_round needs round_index when no self pairs are given")
    mixed = mix_pairs(tables, fractions, config.mixup.size, "round", round_index)
    path = write_table(out_dir / "mixed.parquet", mixed, overwrite=True)
    sources = mixed.column("source").to_pylist()
    return MixRecord(round=round_index, mixed=Artifact.of(layout.root, path),
                     counts={s: sources.count(s) for s in sorted(set(sources))})
