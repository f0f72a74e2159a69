"""The models of a run, in order: the pretrained base, iteration 0 (Diffusion-DPO on the human seed),
then one model per SAIL round. Round i generates with model i and is judged against the reference
``reward.reference`` names (:mod:`sail_core.algorithm.judge`).
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

from sail_core.algorithm.judge import JudgeReference, judge_reference
from sail_core.config import SailConfig
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.run.layout import Artifact


class ModelRef(BaseModel):
    """A model of the run: its checkpoint spec and an identity that changes whenever its weights do."""

    model_config = ConfigDict(frozen=True)

    checkpoint: UnetCheckpoint
    identity: str

    @property
    def label(self) -> str:
        return self.checkpoint.label


def base_model(config: SailConfig) -> ModelRef:
    m = config.model
    return ModelRef(checkpoint=UnetCheckpoint(), identity=f"base:{m.source}@{m.revision or ''}:{m.variant or ''}")


def trained_model(checkpoint: UnetCheckpoint, weights: Artifact, init: ModelRef) -> ModelRef:
    """The model a train stage wrote: its identity chains the init's identity with the new weights' hash."""
    digest = hashlib.sha256(f"{init.identity}|{weights.sha256}".encode()).hexdigest()[:32]
    return ModelRef(checkpoint=checkpoint, identity=f"trained:{digest}")


class Lineage(BaseModel):
    """``models[0]`` is the base, ``models[1]`` iteration 0 (the base itself when there is no human seed,
    e.g. pure RealAlign), ``models[i + 1]`` the model after round i."""

    model_config = ConfigDict(frozen=True)

    models: tuple[ModelRef, ...]

    @staticmethod
    def start(base: ModelRef) -> Lineage:
        return Lineage(models=(base,))

    def then(self, model: ModelRef) -> Lineage:
        return Lineage(models=(*self.models, model))

    @property
    def base(self) -> ModelRef:
        return self.models[0]

    @property
    def latest(self) -> ModelRef:
        return self.models[-1]

    def policy(self, round_index: int) -> ModelRef:
        """The model that generates and is trained in round ``round_index`` (≥ 1)."""
        if not 1 <= round_index < len(self.models):
            raise ValueError(f"round {round_index} needs models[0..{round_index}], the lineage has {len(self.models)}")
        return self.models[round_index]

    def judge(self, option: JudgeReference, round_index: int) -> ModelRef:
        """The self-reward's reference for round ``round_index``."""
        return judge_reference(option, round_index, self.models)
