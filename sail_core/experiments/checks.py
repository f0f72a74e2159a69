"""Everything an experiment will ask of its configs, checked before the first arm runs.

An experiment runs for hours; a typo in its last arm, or a spec override that only the arms' own
overrides make valid (the analyses use the spec's overrides alone), must not be found after the
earlier arms have run. :func:`check_experiment` builds every config the invocation will build (each
arm's, the analyses', the ranking analysis's) and reports every problem, one line each, at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from sail_core.config import load_config
from sail_core.errors import InputError
from sail_core.experiments.spec import ExperimentSpec, seed_overrides


def one_line(exc: BaseException) -> str:
    """An error as one line: a pydantic error as its first problem (where: what), else its text."""
    if isinstance(exc, ValidationError) and exc.errors():
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where + ': ' if where else ''}{error['msg'].removeprefix('Value error, ')}"
    return " ".join(str(exc).split())


def _problem(where: str, build: Any) -> str | None:
    """``where: <the error>`` if ``build()`` raises a config error, else None."""
    try:
        build()
    except (InputError, ValidationError, ValueError) as exc:
        return f"{where}: {one_line(exc)}"
    return None


def experiment_problems(spec: ExperimentSpec, seeds: Sequence[int], asked: Sequence[str], run: Sequence[str],
                        analyses: bool, ranking: bool) -> list[str]:
    """One line per problem of running the arms ``run`` × ``seeds`` of ``spec`` (``asked``: the arms the
    command named, each of which must exist), then the analyses and the ranking analysis if asked for."""
    problems: list[str] = []
    names = [a.name for a in spec.arms]
    unknown = [a for a in asked if a not in names]
    problems += [f"--arm {a!r}: no arm of that name (the spec's: {', '.join(names) or 'none'})" for a in unknown]
    duplicates = sorted({s for s in seeds if list(seeds).count(s) > 1})
    if duplicates:
        problems.append(f"seeds: {duplicates} given more than once")
    bad_seeds = [s for s in seeds if not isinstance(s, int) or isinstance(s, bool) or s < 0]
    problems += [f"seed {s!r}: a seed is a non-negative integer" for s in bad_seeds]
    preset = _problem(f"preset {spec.preset!r}", lambda: load_config(spec.preset))
    if preset is not None:  # every other config starts from it: one line, not one per arm
        return [*problems, preset]
    seed = next((s for s in seeds if s not in bad_seeds), 0)  # seeds change seed fields only: one checks all
    chosen = [a for a in spec.arms if a.name in run]
    for arm in chosen:
        problems.append(_problem(f"arm {arm.name!r}", lambda arm=arm: load_config(
            spec.preset, {**spec.overrides, **seed_overrides(seed), **arm.overrides, "rounds": arm.rounds})))
    if analyses and chosen:
        problems.append(_problem("the analyses (the spec's overrides without an arm's)",
                                 lambda: load_config(spec.preset, {**spec.overrides, **seed_overrides(seed)})))
    if ranking:
        overrides = {**spec.overrides, **seed_overrides(seed), **spec.analysis.ranking_overrides}
        problems.append(_problem("the ranking analysis (analysis.ranking_overrides)",
                                 lambda: _ranking_configs(spec, overrides)))
    return [p for p in problems if p is not None]


def _ranking_configs(spec: ExperimentSpec, overrides: dict[str, Any]) -> None:
    config = load_config(spec.preset, overrides)
    for setting in spec.analysis.ranking:
        try:
            setting.config(config.reward)
        except (ValidationError, ValueError) as exc:
            raise InputError(f"ranking setting {setting.name!r}: {one_line(exc)}") from exc


def check_experiment(spec: ExperimentSpec, source: str, seeds: Sequence[int], asked: Sequence[str],
                     run: Sequence[str], analyses: bool, ranking: bool) -> None:
    """Raise one :class:`InputError` listing every problem (one line each) before anything runs."""
    problems = experiment_problems(spec, seeds, asked, run, analyses, ranking)
    if problems:
        raise InputError(f"experiment {spec.name!r}: {len(problems)} problem(s), nothing was run:\n"
                         + "\n".join(problems), file=source)
