"""Turning N ranked candidates of a prompt into one preference pair (paper §4.1 and Table 5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sail_core.seeding import derive_seed


@dataclass(frozen=True)
class SelectedPair:
    winner: int
    loser: int
    p_win: float
    """σ(r_w − r_l)."""


def select_pair(
    rewards: Sequence[float],
    mode: Literal["best_worst", "random"],
    *seed_parts: object,
) -> SelectedPair | None:
    """Best vs worst (default), or two random candidates ordered by reward (Eq. 10: the one with
    p > 0.5 wins). None when the two rewards are equal: such a pair carries no preference."""
    values = np.asarray(rewards, dtype=np.float64)
    if values.size < 2:
        raise ValueError("need at least two candidates to form a pair")
    if mode == "best_worst":
        a, b = int(values.argmax()), int(values.argmin())
    elif mode == "random":
        rng = np.random.default_rng(derive_seed("pair-selection", *seed_parts))
        a, b = (int(i) for i in rng.choice(values.size, size=2, replace=False))
    else:
        raise ValueError(f"unknown selection mode {mode!r}")
    if values[a] == values[b]:
        return None
    winner, loser = (a, b) if values[a] > values[b] else (b, a)
    p_win = 1.0 / (1.0 + np.exp(-(values[winner] - values[loser])))
    return SelectedPair(winner, loser, float(p_win))
