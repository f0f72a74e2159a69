"""Paired bootstrap confidence intervals for the difference between two models' evaluation scores.

Every model of an experiment is evaluated on the same held-out (prompt, seed) images, so a difference
between two models is measured image by image (paired). Two sources of error remain: which prompts
the evaluation happened to hold out, and which training seed made each model. The interval resamples
both: training seeds with replacement, and prompts with replacement (the same prompt draw for every
seed, as every seed is evaluated on the same prompts). A prompt's images move together (they share
its words), so the prompt, not the image, is the unit resampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sail_core.errors import InputError


@dataclass(frozen=True)
class Interval:
    mean: float
    """The observed mean difference (A − B) over seeds and prompts."""
    low: float
    high: float
    p_not_above_zero: float
    """Share of bootstrap resamples whose mean difference is ≤ 0: a one-sided bootstrap p-value for
    "A is better than B" (small: A is reliably better)."""


def prompt_differences(a: dict[str, Sequence], b: dict[str, Sequence], metric: str) -> tuple[list[str], np.ndarray]:
    """Per prompt, the mean over its images of ``metric`` in ``a`` minus in ``b``. ``a`` and ``b`` are
    score tables (columns ``prompt``, ``seed_index`` and the metric) of the same images, in any order.
    A metric that does not apply to a prompt (NaN in both, e.g. a check of an attribute the prompt
    leaves unsaid) leaves the prompt out."""
    def by_item(table: dict[str, Sequence]) -> dict[tuple[str, int], float]:
        if metric not in table:
            raise InputError(f"the scores have no column {metric!r} (they have {sorted(table)})", parameter="metric")
        return {(p, int(s)): float(v) for p, s, v in zip(table["prompt"], table["seed_index"], table[metric])}

    left, right = by_item(a), by_item(b)
    if left.keys() != right.keys():
        only = sorted(left.keys() ^ right.keys())[:3]
        raise InputError(f"the two evaluations scored different images (e.g. {only}): compare models "
                         "evaluated with the same protocol", parameter="comparisons")
    per_prompt: dict[str, list[float]] = {}
    for item in sorted(left):
        if np.isnan(left[item]) and np.isnan(right[item]):
            continue
        per_prompt.setdefault(item[0], []).append(left[item] - right[item])
    prompts = sorted(per_prompt)
    return prompts, np.array([np.mean(per_prompt[p]) for p in prompts])


def paired_bootstrap(differences: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile interval of the mean of ``differences[s, p]`` (training seed s, prompt p; A − B) under
    resampling of seeds and of prompts, each with replacement. With one seed only prompts vary."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.ndim != 2 or 0 in differences.shape:
        raise ValueError(f"differences must be [seeds, prompts] and non-empty, got shape {differences.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n_seeds, n_prompts = differences.shape
    rng = np.random.default_rng(seed)
    # a resample as counts: how often each seed / prompt was drawn; its mean is a weighted mean
    seed_counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=resamples)
    prompt_counts = rng.multinomial(n_prompts, np.full(n_prompts, 1 / n_prompts), size=resamples)
    means = np.einsum("rs,sp,rp->r", seed_counts, differences, prompt_counts) / (n_seeds * n_prompts)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(mean=float(differences.mean()), low=float(low), high=float(high),
                    p_not_above_zero=float(np.mean(means <= 0)))
