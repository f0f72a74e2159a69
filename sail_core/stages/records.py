"""What stages return: small, JSON-serialisable records (never tensors or images)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from sail_core.models.lineage import UnetCheckpoint
from sail_core.stages.layout import Artifact


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)

    def artifacts(self) -> list[Artifact]:
        return [v for v in self.__dict__.values() if isinstance(v, Artifact)]


class SeedRecord(_Record):
    pairs: Artifact
    pool: Artifact
    n_pairs: int
    n_rows: int
    n_ties: int
    n_unlabelled: int
    n_pool: int


class PromptsRecord(_Record):
    round: int
    prompts: Artifact
    conds: Artifact
    n_prompts: int


class CandidatesRecord(_Record):
    round: int
    candidates: Artifact
    n_prompts: int
    n_candidates: int
    shards_generated: int
    shards_reused: int


class PairsRecord(_Record):
    round: int
    rewards: Artifact
    pairs: Artifact
    n_pairs: int
    mean_p_win: float


class MixRecord(_Record):
    round: int
    mixed: Artifact
    counts: dict[str, int]


class ModelRecord(_Record):
    round: int
    checkpoint: UnetCheckpoint
    weights: Artifact
    metrics: Artifact
    steps: int
    resumed_from: int
    final_metrics: dict[str, float]


class EvalRecord(_Record):
    label: str
    scores: Artifact
    summary: Artifact
    metrics: dict[str, float]
    grid: Artifact | None = None
