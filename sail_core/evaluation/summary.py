"""Summaries of per-image scores: means with 95% confidence intervals, and win rates against a baseline.

A NaN score means "does not apply to this image" (the world scorer's check of an attribute the prompt
leaves unsaid): means, intervals and win rates are over the images where the score applies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

Z_95 = 1.959963984540054


def mean_ci(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval, over the non-NaN
    values (both NaN when every value is NaN)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("no values to summarise")
    data = data[~np.isnan(data)]
    if data.size == 0:
        return float("nan"), float("nan")
    half = Z_95 * data.std(ddof=1) / math.sqrt(data.size) if data.size > 1 else float("nan")
    return float(data.mean()), float(half)


def win_rate(model: np.ndarray, base: np.ndarray, tolerance: float = 0.0) -> float:
    """Mean over matched items of 1 (model better), 0.5 (within ``tolerance``) or 0 (worse); items
    where either score is NaN do not count (NaN when none is left)."""
    model, base = np.asarray(model, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if model.shape != base.shape or model.size == 0:
        raise ValueError(f"win rate needs matched, non-empty score arrays (got {model.shape} and {base.shape})")
    diff = (model - base)[~(np.isnan(model) | np.isnan(base))]
    if diff.size == 0:
        return float("nan")
    return float(np.where(np.abs(diff) <= tolerance, 0.5, (diff > 0).astype(np.float64)).mean())


def summarize(
    scores: Mapping[str, np.ndarray],
    categories: Sequence[str],
    baseline: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Flat metrics: ``<m>``, ``<m>_ci95``, ``<m>@<category>`` and, with a baseline, ``<m>_win_rate``.

    Only finite numbers are kept (records are JSON, where NaN does not round-trip): an entry that is
    undefined, e.g. the interval of a single image or a metric that applies to none, is left out."""
    out: dict[str, float] = {}
    cats = np.asarray(categories)
    for metric, values in scores.items():
        out[metric], out[f"{metric}_ci95"] = mean_ci(values)
        if len(set(categories)) > 1:
            for category in sorted(set(categories)):
                out[f"{metric}@{category}"] = mean_ci(np.asarray(values)[cats == category])[0]
        if baseline is not None and metric in baseline:
            out[f"{metric}_win_rate"] = win_rate(values, baseline[metric])
    return {k: v for k, v in out.items() if math.isfinite(v)}
