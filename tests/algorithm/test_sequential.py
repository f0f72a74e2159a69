"""The sequential stopping rule on hand-made block rewards, and the draw blocks it consumes."""

import numpy as np
import pytest
import torch

from sail_core.algorithm.draws import DrawPlan, draw_block, draw_noise
from sail_core.algorithm.sequential import (
    STOP_CAP,
    STOP_SETTLED,
    STOP_TIED,
    StoppingRule,
    critical_value,
    distinct_rows,
    standard_error,
)


def test_standard_error_is_the_randomised_block_residual():
    # candidate effects (0, 1, 3) + block effects (10, -5) + residuals ±0.5: every residual is ±0.5
    blocks = np.array([[10.5, -5.5], [10.5, -3.5], [13.0, -2.0]])
    residual = blocks - blocks.mean(1, keepdims=True) - blocks.mean(0, keepdims=True) + blocks.mean()
    s2 = (residual**2).sum() / ((3 - 1) * (2 - 1))
    assert standard_error(blocks) == pytest.approx(np.sqrt(2 * s2 / 2))
    # a block effect shared by all candidates (the common random numbers' noise) does not enter it
    assert standard_error(blocks + np.array([[100.0, -70.0]])) == pytest.approx(standard_error(blocks))


def test_critical_value_is_bonferroni_over_both_ends():
    # Student t quantiles from tables: t(0.95; 10) = 1.8125, t(0.975; 4) = 2.7764
    assert critical_value(0.9, 1, 10) == pytest.approx(1.8125, abs=1e-4)
    assert critical_value(0.9, 2, 4) == pytest.approx(2.7764, abs=1e-4)


def test_identical_candidates_are_tied_at_the_first_block():
    rule = StoppingRule(confidence=0.9, indifference=0.0, max_blocks=5)
    same = np.tile(np.array([[0.3]]), (4, 1))
    assert rule.decide(same, same.mean(1)) == STOP_TIED
    assert distinct_rows(np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])) == [0, 1]


def test_settles_only_when_best_and_worst_both_clear_the_margin():
    rule = StoppingRule(confidence=0.9, indifference=0.0, max_blocks=10)
    noise = np.array([[0.1, -0.1, 0.05], [-0.1, 0.1, -0.05], [0.0, 0.0, 0.0]])
    clear = np.array([[5.0], [0.0], [-5.0]]) + noise
    assert rule.decide(clear[:, :1], clear[:, :1].mean(1)) is None  # one block: no variance estimate yet
    assert rule.decide(clear, clear.mean(1)) == STOP_SETTLED
    # the best is clear, the two worst overlap: go on
    top_only = np.array([[5.0], [0.0], [0.05]]) + noise
    assert rule.decide(top_only, top_only.mean(1)) is None
    # ... unless their gap is within the indifference zone
    lenient = StoppingRule(confidence=0.9, indifference=1.0, max_blocks=10)
    assert lenient.decide(top_only, top_only.mean(1)) == STOP_SETTLED


def test_margin_is_the_critical_value_times_the_standard_error():
    rule = StoppingRule(confidence=0.8, indifference=0.0, max_blocks=10)
    rng = np.random.default_rng(0)
    blocks = rng.normal(size=(3, 4))
    margin = critical_value(0.8, 2, 2 * 3) * standard_error(blocks)
    for gap, settled in ((1.001 * margin, True), (0.999 * margin, False)):
        rewards = np.array([gap, 0.0, -gap])
        assert rule.settled(blocks, rewards) is settled


def test_cap_stops_an_unsettled_prompt():
    rule = StoppingRule(confidence=0.9, indifference=0.0, max_blocks=3)
    overlapping = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, -0.5], [0.2, -0.2, 0.1]])
    assert rule.decide(overlapping[:, :2], overlapping[:, :2].mean(1)) is None
    assert rule.decide(overlapping, overlapping.mean(1)) == STOP_CAP


def test_draw_blocks_are_deterministic_stratified_and_antithetic():
    plan = DrawPlan(size=4, timestep_range=(0, 1000), stratified=True, antithetic=True)
    t, eps = draw_block((2, 3, 3), plan, 5, "prompt-a")
    t2, eps2 = draw_block((2, 3, 3), plan, 5, "prompt-a")
    assert torch.equal(t, t2) and torch.equal(eps, eps2)
    assert not torch.equal(draw_block((2, 3, 3), plan, 6, "prompt-a")[1], eps)
    # two strata of 500 steps, each holding one antithetic pair (same t, noises ε and −ε)
    assert t[0] == t[1] and t[2] == t[3] and 0 <= t[0] < 500 <= t[2] < 1000
    assert torch.equal(eps[1], -eps[0]) and torch.equal(eps[3], -eps[2])
    strata = DrawPlan(size=10, timestep_range=(100, 200), stratified=True)
    ts, _ = draw_block((1,), strata, 0, "p")
    assert [(int(x) - 100) // 10 for x in ts] == list(range(10))


def test_fixed_k_draws_keep_their_seeding():
    """The paper's uniform draws are what they were before blocks existed (fixed-K rewards unchanged)."""
    from sail_core.seeding import generator

    g = generator("reward-draws", "p")
    t, eps = draw_noise((2, 2), 3, (0, 1000), "p")
    assert torch.equal(t, torch.randint(0, 1000, (3,), generator=g))
    assert torch.equal(eps, torch.randn((3, 2, 2), generator=g))


def test_antithetic_blocks_must_hold_pairs():
    with pytest.raises(ValueError, match="pairs"):
        DrawPlan(size=3, timestep_range=(0, 1000), antithetic=True)
