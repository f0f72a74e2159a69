"""An experiment: arms (config variants) × seeds, each arm a SAIL run, plus analyses.

All arms of one seed share one run directory: stages with the same settings and inputs (the seed
set, the base model's evaluation, iteration 0, a shared first round...) have the same key there, so
each is computed once per seed, not once per arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from sail_core.errors import InputError


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rounds: int = Field(ge=0)
    overrides: dict[str, Any] = {}
    description: str = ""


class Analysis(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    self_reward_accuracy: bool = True
    """Agreement of each model's implicit reward with held-out human labels (paper Fig. 5), per arm."""
    accuracy_pairs: int = 400
    accuracy_arms: tuple[str, ...] = ()
    selection_k: tuple[int, ...] = (1, 2, 5, 10, 20)
    """K values for the best/worst-vs-judge agreement of round-1 candidates, with and without CRN."""
    selection_repeats: int = 3
    selection_arm: str | None = None


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    preset: str
    """The preset (or config file) every arm starts from."""
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: dict[str, Any] = {}
    """Applied to every arm (before the arm's own overrides)."""
    arms: tuple[Arm, ...]
    analysis: Analysis = Analysis()

    @staticmethod
    def load(path: str | Path) -> ExperimentSpec:
        path = Path(path)
        if not path.exists():
            raise InputError("experiment spec does not exist", file=path)
        try:
            return ExperimentSpec.model_validate(yaml.safe_load(path.read_text()))
        except ValueError as exc:
            raise InputError(f"invalid experiment spec: {exc}", file=path) from exc

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise InputError(f"no arm named {name!r}", parameter="arm")


def seed_overrides(seed: int) -> dict[str, Any]:
    """What an experiment seed varies: the seed subset, the rounds' prompts, the candidates' noise and
    the training noise. The evaluation protocol (its prompts and noise) stays fixed across seeds, so
    every seed is measured on the same images' prompts and starting noise."""
    return {"seed_data.seed": seed, "prompts.seed": seed, "generate.seed": seed, "seed_train.seed": seed,
            "round_train.seed": seed}
