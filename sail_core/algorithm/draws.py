"""The (t, ε) draws that estimate Eq. 8's expectation, and two ways to make fewer of them do.

r(x) = −β/2 · E_{t,ε}[‖ε − ε_θ(x_t, y, t)‖² − ‖ε − ε_ref(x_t, y, t)‖²] is estimated by a mean over
draws. The draws of a prompt are shared by its N candidates (common random numbers), so only the
part of each draw's noise that differs between candidates reaches a reward *difference*. Two
further options reduce that part, each keeping the estimate unbiased:

* ``stratified``: the S draws of a block take their timesteps from S equal strata of the range
  (one uniform t per stratum) instead of S uniform t; the part of the variance that comes from
  *which* t were drawn (errors at t≈999 and t≈10 differ by orders of magnitude) shrinks.
* ``antithetic``: draws come in pairs (t, ε), (t, −ε). To first order in ε the per-draw reward is
  ε·(ε_θ − ε_ref) plus an even term, so the pair cancels the odd part exactly where the predictions
  depend little on the sign of ε.

Draws come in *blocks*: a block is a deterministic function of the prompt's seed parts and the block
index alone, so a prompt's draws do not depend on how many blocks it ends up using, which other
prompts are scored with it, or in which order. Blocks are independent of each other and identically
distributed, which is what the sequential stopping rule (:mod:`sail_core.algorithm.sequential`)
needs: its variance estimate treats block means as independent observations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sail_core.seeding import generator


@dataclass(frozen=True)
class DrawPlan:
    """How one block of draws is made."""

    size: int
    """Draws per block."""
    timestep_range: tuple[int, int]
    """Half-open [lo, hi) range of t."""
    stratified: bool = False
    antithetic: bool = False

    def __post_init__(self) -> None:
        lo, hi = self.timestep_range
        if not 0 <= lo < hi:
            raise ValueError(f"empty timestep range {self.timestep_range}")
        if self.antithetic and self.size % 2:
            raise ValueError(f"antithetic draws come in pairs: a block of {self.size} draws cannot hold them")
        if self.stratified and self.strata > hi - lo:
            raise ValueError(f"{self.strata} strata do not fit in the timestep range {self.timestep_range}")

    @property
    def strata(self) -> int:
        """Distinct timesteps per block (an antithetic pair shares its t)."""
        return self.size // 2 if self.antithetic else self.size


def draw_noise(
    shape: Sequence[int], k: int, timestep_range: tuple[int, int], *seed_parts: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """K uniform timesteps and K noises, deterministic in ``seed_parts`` (the fixed-K default draws)."""
    g = generator("reward-draws", *seed_parts)
    lo, hi = timestep_range
    timesteps = torch.randint(lo, hi, (k,), generator=g)
    noise = torch.randn((k, *shape), generator=g)
    return timesteps, noise


def draw_block(
    shape: Sequence[int], plan: DrawPlan, block: int, *seed_parts: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """Block ``block`` of a prompt's draws: ``plan.size`` timesteps and noises."""
    g = generator("reward-draws", *seed_parts, "block", block)
    lo, hi = plan.timestep_range
    m = plan.strata
    if plan.stratified:
        edges = [lo + (hi - lo) * s // m for s in range(m + 1)]
        u = torch.rand(m, generator=g, dtype=torch.float64)
        widths = torch.tensor([edges[s + 1] - edges[s] for s in range(m)], dtype=torch.float64)
        timesteps = torch.tensor(edges[:m], dtype=torch.int64) + (u * widths).floor().long()
    else:
        timesteps = torch.randint(lo, hi, (m,), generator=g)
    noise = torch.randn((m, *shape), generator=g)
    if plan.antithetic:
        timesteps = timesteps.repeat_interleave(2)
        noise = torch.stack([noise, -noise], dim=1).flatten(0, 1)
    return timesteps, noise
