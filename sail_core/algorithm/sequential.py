"""When a prompt's best and worst candidates are settled: the stopping rule of sequential ranking.

A prompt's N candidates share blocks of draws (common random numbers, :mod:`sail_core.algorithm.draws`).
After n blocks, ``Y[i, b]`` is the mean of Eq. 8's per-draw term −β/2·(‖ε − ε_θ‖² − ‖ε − ε_ref‖²)
over block b's draws for candidate i, and r̂_i is Eq. 8's reward estimated over all n·B draws (the
mean of row i). The chosen pair is always b* = argmax r̂ and w* = argmin r̂: exactly the fixed-K
rule (Eq. 10, best vs worst) applied to the draws made so far. The rule below only decides whether
to make more draws; it never chooses a different pair.

**What is tested.** Blocks are independent and identically distributed (each is a fresh set of
draws), so Y follows a randomised-block layout: candidate effects r_i (the quantity Eq. 8's
expectation defines) plus a block effect shared by all candidates (the draws' common noise, which
cancels in every difference) plus residual noise. The residual variance s² is pooled over the N
candidates, with (N − 1)(n − 1) degrees of freedom, and the standard error of a difference of two
candidates' estimates is se = s·√(2/n). The prompt stops when

    r̂_b* − r̂_c ≥ q·se − δ   for every other candidate c   (the best is settled), and
    r̂_c − r̂_w* ≥ q·se − δ   for every other candidate c   (the worst is settled),

with q the Student-t quantile at 1 − α/(2(N − 1)) (Bonferroni over the 2(N − 1) comparisons with the
chosen best and worst), α = 1 − ``confidence`` and δ = ``indifference``. This is Hsu's multiple
comparisons with the best (and with the worst): if the event "r̂_c − r̂_B < r_c − r_B + q·se for
every c", B the true best, holds (probability ≥ 1 − α/2), then stopping implies r_b* > r_B − δ: the
chosen best is within δ of the true best, whichever candidate the data made look best (the
selection is accounted for). Likewise for the worst. So, **at each look**, with probability at least
``confidence`` no candidate's expected reward is above the chosen best's, or below the chosen
worst's, by more than δ. The looks are not corrected for (a prompt that could look L times has a
per-prompt error bound of L·α by the union bound); the experiment measures the actual rate.

**Other stops.** Candidates whose per-draw rewards are all identical are one candidate for the test
(a duplicate cannot be told apart by any number of draws; float noise of the batched kernels is
ignored, :data:`DUPLICATE_TOLERANCE`); when every candidate is a duplicate of one, the prompt stops at
the first block with reason ``tied`` and gives no pair (its candidates get their mean reward, equal,
and ``select_pair`` makes no pair of equal rewards). A prompt that reaches ``max_blocks``
stops with reason ``cap``; its pair is the argmax/argmin of its k_max draws.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

STOP_FIXED = "fixed"
"""The fixed-K estimator: every prompt gets K draws."""
STOP_SETTLED = "settled"
STOP_TIED = "tied"
STOP_CAP = "cap"
STOP_REASONS = (STOP_FIXED, STOP_SETTLED, STOP_TIED, STOP_CAP)


@lru_cache(maxsize=1024)
def critical_value(confidence: float, rivals: int, dof: int) -> float:
    """q: the one-sided Student-t quantile at 1 − α/(2·rivals), α = 1 − confidence."""
    from scipy.stats import t as student_t

    return float(student_t.ppf(1.0 - (1.0 - confidence) / (2 * rivals), dof))


@dataclass(frozen=True)
class StoppingRule:
    confidence: float
    indifference: float
    max_blocks: int

    def decide(self, blocks: np.ndarray, rewards: np.ndarray) -> str | None:
        """The stopping reason after ``blocks.shape[1]`` blocks, or None to draw another block.

        ``blocks`` [N, n]: Y, the mean per-draw reward of each candidate in each block;
        ``rewards`` [N]: the Eq. 8 estimates the pair is chosen by."""
        distinct = distinct_rows(blocks)
        if len(distinct) < 2:
            return STOP_TIED
        if blocks.shape[1] >= 2 and self.settled(blocks[distinct], rewards[distinct]):
            return STOP_SETTLED
        if blocks.shape[1] >= self.max_blocks:
            return STOP_CAP
        return None

    def settled(self, blocks: np.ndarray, rewards: np.ndarray) -> bool:
        """Are the argmax and the argmin of ``rewards`` settled (module docstring)? Needs n ≥ 2 blocks."""
        n_cand, n = blocks.shape
        margin = self.critical_value(n_cand, n) * standard_error(blocks) - self.indifference
        order = np.sort(rewards)
        return bool(order[-1] - order[-2] >= margin and order[1] - order[0] >= margin)

    def critical_value(self, n_cand: int, n_blocks: int) -> float:
        return critical_value(self.confidence, n_cand - 1, (n_cand - 1) * (n_blocks - 1))


def standard_error(blocks: np.ndarray) -> float:
    """se of r̂_i − r̂_j: s·√(2/n), s² the residual variance of the randomised-block layout."""
    n_cand, n = blocks.shape
    residual = blocks - blocks.mean(axis=1, keepdims=True) - blocks.mean(axis=0, keepdims=True) + blocks.mean()
    variance = float((residual**2).sum()) / ((n_cand - 1) * (n - 1))
    return float(np.sqrt(2.0 * variance / n))


DUPLICATE_TOLERANCE = 1e-4
"""Rows within this fraction of the prompt's largest per-draw reward are duplicates. The same latent
scored at two positions of a batch can differ in the last bits on several CPU threads (the kernels
split a batch's rows differently), which β = 5000 turns into ~1e-5 of a reward; distinct images differ
by orders of magnitude more."""


def distinct_rows(blocks: np.ndarray) -> list[int]:
    """Indices of the first occurrence of each distinct row (duplicates, up to float noise
    (:data:`DUPLICATE_TOLERANCE`), are one candidate)."""
    tolerance = DUPLICATE_TOLERANCE * float(np.abs(blocks).max(initial=0.0)) + 1e-12
    kept: list[int] = []
    for i, row in enumerate(blocks):
        if not any(float(np.abs(row - blocks[j]).max(initial=0.0)) <= tolerance for j in kept):
            kept.append(i)
    return kept
