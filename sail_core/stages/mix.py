"""Stage of a round: the mixed training set (α self pairs, 1 − α human seed pairs)."""

from __future__ import annotations

from pathlib import Path

from sail_core.config import SailConfig
from sail_core.data.mixup import mix_pairs, mixup_fractions
from sail_core.data.pairs import read_pairs
from sail_core.io.tables import write_table
from sail_core.stages.layout import Artifact, RunLayout
from sail_core.stages.records import MixRecord, PairsRecord, SeedRecord


def mix_round(config: SailConfig, layout: RunLayout, seed: SeedRecord, pairs: PairsRecord, out_dir: Path) -> MixRecord:
    tables = {"self": read_pairs(pairs.pairs.resolve(layout.root)), "human": read_pairs(seed.pairs.resolve(layout.root))}
    mixed = mix_pairs(tables, mixup_fractions(config.mixup), config.mixup.size, "round", pairs.round)
    path = write_table(out_dir / "mixed.parquet", mixed, overwrite=True)
    sources = mixed.column("source").to_pylist()
    return MixRecord(round=pairs.round, mixed=Artifact.of(layout.root, path),
                     counts={s: sources.count(s) for s in sorted(set(sources))})
