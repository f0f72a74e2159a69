"""Stage of a round: the mixed training set (paper §4.2): α self pairs, 1 − α human seed pairs; with
RealAlign also real ≻ generated and real ≻ perturbed pairs, each source at its ``mixup`` fraction."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pydantic import Field

from sail_core.algorithm.mixup import mix_pairs, mixup_fractions
from sail_core.config import SailConfig
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
from sail_core.run.layout import Artifact
from sail_core.run.records import CandidatesRecord, MixRecord, PairsRecord, RealRecord, SeedRecord
from sail_core.run.stage import Stage, StageContext, StageInputs, round_group
from sail_core.stages.real import real_generated_pairs, real_perturbed_pairs


class MixInputs(StageInputs):
    """Every source is optional, but a source with a positive fraction must be given."""

    round_index: int = Field(ge=1)
    seed: SeedRecord | None = None
    """The human seed pairs."""
    pairs: PairsRecord | None = None
    """The round's self-ranked pairs."""
    real: RealRecord | None = None
    """RealAlign's real images (their real ≻ perturbed pairs)."""
    real_candidates: CandidatesRecord | None = None
    """The current model's samples for the real captions (real ≻ generated pairs)."""


def mix_round(ctx: StageContext, inputs: MixInputs) -> MixRecord:
    """Mix the given sources by ``mixup``'s fractions."""
    config, layout = ctx.config, ctx.layout
    given = {SOURCE_HUMAN: inputs.seed.pairs if inputs.seed else None,
             SOURCE_SELF: inputs.pairs.pairs if inputs.pairs else None}
    tables = {s: read_pairs(a.resolve(layout.root)) for s, a in given.items() if a is not None}
    if config.mixup.real_generated > 0 and inputs.real is not None and inputs.real_candidates is not None:
        tables[SOURCE_REAL_GENERATED] = real_generated_pairs(layout, inputs.real, inputs.real_candidates)
    if config.mixup.real_perturbed > 0 and inputs.real is not None:
        tables[SOURCE_REAL_PERTURBED] = real_perturbed_pairs(layout, inputs.real)
    tables = {s: t.select(PAIR_COLUMNS).cast(PAIR_SCHEMA) for s, t in tables.items()}
    fractions = mixup_fractions(config.mixup)
    missing = [s for s, f in fractions.items() if f > 0 and s not in tables]
    if missing:
        raise InputError(f"mixup gives {missing} a positive fraction but no such pairs were passed", parameter="mixup")
    mixed: pa.Table = mix_pairs(tables, fractions, config.mixup.size, "round", inputs.round_index)
    path = write_table(ctx.out_dir / "mixed.parquet", mixed, overwrite=True)
    sources = mixed.column("source").to_pylist()
    return MixRecord(round=inputs.round_index, mixed=Artifact.of(layout.root, path),
                     counts={s: sources.count(s) for s in sorted(set(sources))})


def mix_settings(config: SailConfig, inputs: MixInputs) -> dict[str, Any]:
    mixup = config.mixup.model_dump(mode="json")
    # RealAlign's fractions at their default 0 stay out of the key, so SAIL runs key as before anchors existed
    for name in ("real_generated", "real_perturbed"):
        if not mixup[name]:
            del mixup[name]
    settings: dict[str, Any] = {"mixup": mixup}
    if inputs.real is not None:  # generated_per_image decides which candidates become pairs
        settings["real"] = config.real.model_dump(mode="json")
    return settings


MIX = Stage(
    name="mix", inputs=MixInputs, record=MixRecord, run=mix_round,
    group=lambda inputs: round_group(inputs.round_index), settings=mix_settings,
    code=("sail_core.algorithm.mixup",),
    description="α self pairs + (1 − α) human seed pairs (+ real anchors)",
)
