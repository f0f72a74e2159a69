"""Scorers of real text-to-image reward/quality models and the registry that builds them by name.

>>> scorer = build_scorer("pickscore", device="cuda")                # Hub ids (or a warm cache)
>>> scorer = build_scorer("aesthetic", source="/models/sac+logos+ava1-l14-linearMSE.pth",
...                       clip="/models/clip-vit-large-patch14")     # offline, local files
>>> scorer.score(images, prompts)   # {"aesthetic": float64 array, one value per image}

``source`` is the scorer's main weights (see ``SOURCES``); the other pieces are keyword options.
``source="random"`` builds the real architecture with tiny random weights (tests, smoke runs).

Other packages add scorers through the ``sail.scorers`` entry points (a name and a class taking
``device=`` and returning ``{metric: values}`` from ``score(images, prompts)``): the embedded world
registers its hidden human as ``world`` that way (pyproject.toml).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch

from sail_core.errors import InputError
from sail_core.evaluation.scorers.base import ImageScorer

RANDOM_SOURCE = "random"


@dataclass(frozen=True)
class ScorerSpec:
    """A scorer of the registry. Its class is named, not imported: the scorers import transformers,
    which a process that never scores (a flow whose evaluations are cached) should not pay for."""

    cls: str
    """``module:Class``, a class with ``from_pretrained`` and ``random`` constructors."""
    source_parameter: str
    options: tuple[str, ...]
    fixed: tuple[tuple[str, Any], ...] = ()

    def scorer_class(self) -> type:
        module, name = self.cls.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def build(self) -> Callable[..., ImageScorer]:
        return self.scorer_class().from_pretrained

    @property
    def random(self) -> Callable[..., ImageScorer]:
        return self.scorer_class().random


SCORERS: dict[str, ScorerSpec] = {
    "pickscore": ScorerSpec(f"{__name__}.pickscore:PickScoreScorer", "model", ("processor",)),
    "clipscore": ScorerSpec(f"{__name__}.clipscore:ClipScoreScorer", "model", ("processor",)),
    "aesthetic": ScorerSpec(f"{__name__}.aesthetic:AestheticScorer", "head", ("clip",)),
    "imagereward": ScorerSpec(f"{__name__}.imagereward:ImageRewardScorer", "checkpoint", ("tokenizer", "med_config")),
    "hpsv2": ScorerSpec(f"{__name__}.hpsv2:HPSv2Scorer", "checkpoint", ("tokenizer",), (("version", "v2.0"),)),
    "hpsv2.1": ScorerSpec(f"{__name__}.hpsv2:HPSv2Scorer", "checkpoint", ("tokenizer",), (("version", "v2.1"),)),
}
ALIASES = {
    "pick": "pickscore", "pick_score": "pickscore", "clip": "clipscore", "clip_score": "clipscore",
    "aesthetics": "aesthetic", "laion_aesthetic": "aesthetic", "image_reward": "imagereward",
    "hps": "hpsv2", "hpsv2.0": "hpsv2", "hps_v2": "hpsv2", "hpsv21": "hpsv2.1", "hps_v2.1": "hpsv2.1",
}
SOURCES = {name: spec.source_parameter for name, spec in SCORERS.items()}


PLUGIN_GROUP = "sail.scorers"


@cache
def _plugins() -> dict[str, object]:
    return {ep.name: ep for ep in entry_points(group=PLUGIN_GROUP)}


def scorer_names() -> tuple[str, ...]:
    return (*SCORERS, *sorted(_plugins()))


def canonical_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in SCORERS and key not in _plugins():
        raise InputError(f"unknown scorer {name!r}; choose one of {sorted(scorer_names())}", parameter="scorer")
    return key


def build_scorer(
    name: str, source: str | Path | None = None, device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None, **options: Any,
) -> ImageScorer:
    """A scorer by name. ``source``: its main weights (Hub id, local file or folder; None = the
    published default; "random" = tiny random weights). ``options``: the scorer's other pieces
    (e.g. ``processor`` for PickScore, ``clip`` for the aesthetic predictor) and ``batch_size``."""
    key = canonical_name(name)
    if key in _plugins():
        if source is not None or options:
            raise InputError(f"scorer {key!r} takes no source or options", parameter=key)
        return _plugins()[key].load()(device=device)
    spec = SCORERS[key]
    allowed = set(spec.options) | {"batch_size"}
    if source == RANDOM_SOURCE:
        allowed = {"batch_size", "seed", "image_size"}
    unknown = set(options) - allowed
    if unknown:
        raise InputError(f"scorer {key!r} takes no option(s) {sorted(unknown)}; it takes {sorted(allowed)}",
                         parameter=sorted(unknown)[0])
    fixed = dict(spec.fixed)
    if source == RANDOM_SOURCE:
        return spec.random(device=device, **fixed, **options)
    if source is not None:
        options[spec.source_parameter] = source
    return spec.build(device=device, dtype=dtype, **fixed, **options)


def __getattr__(name: str) -> type:
    """The scorer classes by name (``from sail_core.evaluation.scorers import AestheticScorer``), imported
    when first asked for."""
    spec = next((s for s in SCORERS.values() if s.cls.endswith(f":{name}")), None)
    if spec is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return spec.scorer_class()


__all__ = [
    "AestheticScorer", "ClipScoreScorer", "HPSv2Scorer", "ImageRewardScorer", "ImageScorer", "PickScoreScorer",
    "RANDOM_SOURCE", "SCORERS", "SOURCES", "build_scorer", "canonical_name", "scorer_names",
]
