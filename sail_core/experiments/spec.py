"""An experiment: arms (config variants) × seeds, each arm a SAIL run, plus analyses.

All arms of one seed share one run directory: stages with the same settings and inputs (the seed
set, the base model's evaluation, iteration 0, a shared first round...) have the same key there, so
each is computed once per seed, not once per arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sail_core.config import read_yaml_mapping
from sail_core.errors import InputError
from sail_core.experiments.ranking import RankingSetting
from sail_core.run.layout import check_name


class Arm(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    rounds: int = Field(ge=0)
    overrides: dict[str, Any] = {}
    description: str = ""

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, name: str) -> str:
        """An arm names its report folder in the seed's run (``report-<arm>``)."""
        return check_name(name, "arm name")


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
    ranking: tuple[RankingSetting, ...] = ()
    """Ranking estimators to compare on round-1 candidates of the iteration-0 model (passes per
    candidate, agreement with the judge, variance of reward differences; ``sail_core.experiments.ranking``)."""
    ranking_repeats: int = Field(3, ge=1)
    ranking_overrides: dict[str, Any] = {}
    """Config overrides of the ranking analysis's candidate set only (e.g. more prompts than a round has)."""
    ranking_reference: str | None = None
    """A ranking setting every other is compared with, prompt by prompt: the difference in agreement
    with a paired bootstrap interval over the (seed, prompt) units, and the ratio of passes."""
    ranking_arms_rounds: int = Field(0, ge=0)
    """> 0: every ranking setting is also an arm of that many SAIL rounds (named as the setting), so the
    utility after training on each setting's pairs is measured by ``--arm <setting>``."""
    comparisons: tuple[tuple[str, str], ...] = ()
    """Pairs of models ``[arm/model, arm/model]`` (model: ``base``, ``round-00``, ``round-01``, ...):
    for each, the difference A − B of every ``comparison_metrics`` with a paired bootstrap confidence
    interval over the evaluation's prompts and the training seeds (``sail_core.experiments.bootstrap``)."""
    comparison_metrics: tuple[str, ...] = ("utility",)
    plots: dict[str, tuple[str, ...]] = {}
    """More plots of utility per model, each of some arms only (file stem → arms), beside
    ``utility.png`` of every arm: a dozen arms on one plot cannot be told apart."""
    bootstrap_resamples: int = Field(2000, ge=100)
    confidence_level: float = Field(0.95, gt=0, lt=1)


class ExperimentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    preset: str
    """The preset (or config file) every arm starts from."""
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: dict[str, Any] = {}
    """Applied to every arm (before the arm's own overrides)."""
    arms: tuple[Arm, ...] = ()
    analysis: Analysis = Analysis()

    @field_validator("name")
    @classmethod
    def _one_path_component(cls, name: str) -> str:
        """The experiment names its folders under ``--runs-dir`` and ``--out``."""
        return check_name(name, "experiment name")

    @model_validator(mode="before")
    @classmethod
    def _ranking_arms(cls, data: Any) -> Any:
        """With ``analysis.ranking_arms_rounds``, each ranking setting is also an arm (unless one of its
        name is given: a dumped spec validates to itself)."""
        analysis = data.get("analysis") or {} if isinstance(data, dict) else {}
        rounds = analysis.get("ranking_arms_rounds", 0) if isinstance(analysis, dict) else 0
        if not rounds:
            return data
        arms = list(data.get("arms") or ())
        named = {a["name"] if isinstance(a, dict) else a.name for a in arms}
        arms += [{"name": s["name"], "rounds": rounds,
                  "overrides": {f"reward.{k}": v for k, v in (s.get("reward") or {}).items()},
                  "description": f"SAIL ranked by the {s['name']} estimator"}
                 for s in analysis.get("ranking") or () if s["name"] not in named]
        return {**data, "arms": arms}

    @model_validator(mode="after")
    def _unique_arms(self) -> ExperimentSpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique: {names}")
        return self

    @model_validator(mode="after")
    def _known_ranking_reference(self) -> ExperimentSpec:
        names = [s.name for s in self.analysis.ranking]
        if self.analysis.ranking_reference is not None and self.analysis.ranking_reference not in names:
            raise ValueError(f"analysis.ranking_reference {self.analysis.ranking_reference!r} is not a ranking "
                             f"setting ({names})")
        return self

    @model_validator(mode="after")
    def _known_comparisons(self) -> ExperimentSpec:
        names = {a.name for a in self.arms}
        for pair in self.analysis.comparisons:
            for side in pair:
                arm, _, model = side.partition("/")
                if arm not in names or not model:
                    raise ValueError(f"comparison {list(pair)}: {side!r} is not <arm>/<model> with an arm of "
                                     f"this spec ({sorted(names)})")
        return self

    @model_validator(mode="after")
    def _known_plot_arms(self) -> ExperimentSpec:
        names = {a.name for a in self.arms}
        for stem, arms in self.analysis.plots.items():
            unknown = [arm for arm in arms if arm not in names]
            if unknown or not arms:
                raise ValueError(f"analysis.plots.{stem}: {unknown or 'no arms'} not arms of this spec "
                                 f"({sorted(names)})")
        return self

    @staticmethod
    def load(path: str | Path) -> ExperimentSpec:
        path = Path(path)
        if not path.exists():
            raise InputError("experiment spec does not exist", file=path)
        data = read_yaml_mapping(path, holds="spec fields (name:, preset:, arms:, ...)")
        try:
            return ExperimentSpec.model_validate(data)
        except ValidationError as exc:  # one line: the first problem and where it is
            error, more = exc.errors()[0], len(exc.errors()) - 1
            where = ".".join(str(part) for part in error["loc"])
            message = error["msg"].removeprefix("Value error, ") + (f" (and {more} more)" if more else "")
            raise InputError(f"invalid experiment spec: {where + ': ' if where else ''}{message}", file=path) from exc
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
