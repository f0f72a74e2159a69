"""What stages return: small, JSON-serialisable records (never tensors or images)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from sail_core.run.layout import Artifact
from sail_core.run.lineage import ModelRef


class Record(BaseModel):
    """Base of every stage record."""

    model_config = ConfigDict(frozen=True)

    def artifacts(self) -> list[Artifact]:
        return [v for v in self.__dict__.values() if isinstance(v, Artifact)]


class SeedRecord(Record):
    pairs: Artifact
    pool: Artifact
    n_pairs: int
    n_rows: int
    n_ties: int
    n_unlabelled: int
    n_pool: int
    n_pool_in_seed: int = 0
    """Captions left out of the rounds' pool because their prompt is in the seed set."""
    n_pool_duplicates: int = 0
    """Captions left out of the rounds' pool as repeats of a prompt already in it."""


class PromptsRecord(Record):
    round: int
    prompts: Artifact
    conds: Artifact
    n_prompts: int
    n_pool: int = 0
    """Distinct prompts of the pool the rounds draw from."""
    n_dropped_in_seed: int = 0
    """Prompts of ``prompts.files`` left out because the seed set has them."""
    n_dropped_duplicates: int = 0
    """Prompts of the pool left out as repeats (case and whitespace aside)."""


class CandidatesRecord(Record):
    round: int
    candidates: Artifact
    n_prompts: int
    n_candidates: int
    shards_generated: int
    shards_reused: int


class PairsRecord(Record):
    round: int
    rewards: Artifact
    pairs: Artifact
    n_pairs: int
    mean_p_win: float
    unet_passes: int = 0
    """UNet passes the ranking made (2 per candidate and draw: policy and reference)."""
    mean_draws: float = 0.0
    """(t, ε) draws per candidate, averaged over the round's candidates."""


class MixRecord(Record):
    round: int
    mixed: Artifact
    counts: dict[str, int]


class RealRecord(Record):
    """RealAlign's real images, encoded once (``sail_core.stages.real``)."""

    prompts: Artifact
    """prompts.parquet (prompt_id, prompt): one row per real image, its caption."""
    conds: Artifact
    """conds.safetensors: the captions' conditioning, row i = prompts row i."""
    anchors: Artifact
    """anchors.parquet: each prompt_id's real latent (latent_file/latent_row) and where the image came from."""
    perturbed_pairs: Artifact
    """pairs.parquet: real ≻ perturbed pairs in the pair schema (empty without perturbed negatives)."""
    perturbations: Artifact
    """perturbations.parquet: per perturbed pair, the perturbation (index, kind, strength) and its seed."""
    n_images: int
    n_perturbed_pairs: int
    generated_per_image: int
    """Generated negatives each image gets per round (0 without generated negatives)."""

    def prompts_record(self, round_index: int) -> PromptsRecord:
        """The captions as a round's prompts, for ``generate_candidates`` (the generated negatives)."""
        return PromptsRecord(round=round_index, prompts=self.prompts, conds=self.conds, n_prompts=self.n_images)


class ModelRecord(Record):
    round: int
    model: ModelRef
    """The trained model: its checkpoint spec and identity (the init's identity chained with the weights')."""
    weights: Artifact
    metrics: Artifact
    steps: int
    resumed_from: int
    final_metrics: dict[str, float]


class EvalRecord(Record):
    label: str
    scores: Artifact
    summary: Artifact
    metrics: dict[str, float]
    grid: Artifact | None = None


class ExportRecord(Record):
    """The run's chosen model as a folder plain diffusers loads (``sail_core.stages.export``)."""

    folder: Artifact
    label: str
    """Which model: ``round-02`` ..."""
    kind: str
    """``lora`` (one merged LoRA file), ``fused`` or ``full`` (a complete pipeline folder)."""
    chosen_by: str
    snippet: str
    """Python that loads it, with the folder's path relative to the run directory."""
