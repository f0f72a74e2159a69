"""The paired bootstrap: its interval and one-sided p-value against values computed by hand, its width
against the normal approximation, and that it carries the spread between training seeds."""

from __future__ import annotations

import numpy as np
import pytest

from sail_core.errors import InputError
from sail_core.experiments.bootstrap import paired_bootstrap, prompt_differences


def test_a_constant_difference_has_a_point_interval():
    interval = paired_bootstrap(np.full((3, 5), 0.25), resamples=200)
    assert (interval.mean, interval.low, interval.high, interval.p_not_above_zero) == (0.25, 0.25, 0.25, 0.0)


def test_two_prompts_give_the_hand_computed_resample_distribution():
    # one seed, prompts with differences -1 and +1: a resample of two prompts has mean -1 (1/4), 0 (1/2)
    # or +1 (1/4), so P(mean <= 0) = 3/4 and the 95% interval spans [-1, 1]
    interval = paired_bootstrap(np.array([[-1.0, 1.0]]), resamples=20000, seed=3)
    assert interval.mean == 0.0
    assert interval.p_not_above_zero == pytest.approx(0.75, abs=0.01)
    assert (interval.low, interval.high) == (-1.0, 1.0)
    narrow = paired_bootstrap(np.array([[-1.0, 1.0]]), resamples=20000, level=0.4, seed=3)
    assert (narrow.low, narrow.high) == (0.0, 0.0)  # the middle 40% are all 0


def test_interval_width_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    differences = rng.normal(0.1, 1.0, size=(1, 400))
    interval = paired_bootstrap(differences, resamples=4000)
    half_width = (interval.high - interval.low) / 2
    expected = 1.96 * differences.std(ddof=1) / np.sqrt(400)
    assert half_width == pytest.approx(expected, rel=0.1)
    assert interval.low < interval.mean < interval.high


def test_the_spread_between_training_seeds_widens_the_interval():
    # every prompt agrees within a seed, but seeds disagree: resampling prompts alone would give a point
    seeds = np.array([0.0, 0.1, 0.2, 0.3, 0.4])[:, None] + np.zeros((5, 50))
    interval = paired_bootstrap(seeds, resamples=4000)
    assert interval.mean == pytest.approx(0.2)
    assert interval.high - interval.low > 0.15
    assert paired_bootstrap(seeds[:1], resamples=100).high == paired_bootstrap(seeds[:1], resamples=100).low


def test_prompt_differences_pair_images_and_average_per_prompt():
    a = {"prompt": ["x", "x", "y", "y"], "seed_index": [0, 1, 0, 1], "utility": [1.0, 3.0, 0.0, 1.0]}
    b = {"prompt": ["y", "x", "y", "x"], "seed_index": [1, 1, 0, 0], "utility": [0.5, 1.0, 0.0, 1.0]}
    prompts, diffs = prompt_differences(a, b, "utility")
    assert prompts == ["x", "y"]
    assert diffs.tolist() == [1.0, 0.25]  # x: (0 + 2) / 2, y: (0 + 0.5) / 2
    c = {**a, "position": [np.nan, np.nan, 1.0, 0.0]}  # x states no position: the check does not apply
    prompts, diffs = prompt_differences(c, {**b, "position": [0.0, np.nan, 0.0, np.nan]}, "position")
    assert prompts == ["y"] and diffs.tolist() == [0.5]
    with pytest.raises(InputError, match="different images"):
        prompt_differences(a, {**b, "seed_index": [1, 1, 0, 2]}, "utility")
    with pytest.raises(InputError, match="no column 'faithful'"):
        prompt_differences(a, b, "faithful")
