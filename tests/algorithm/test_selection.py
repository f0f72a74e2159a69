import math

import pytest

from sail_core.algorithm.selection import select_pair


def test_best_worst_takes_argmax_and_argmin():
    pair = select_pair([0.1, 2.0, -1.5, 0.7], "best_worst", "p")
    assert (pair.winner, pair.loser) == (1, 2)
    assert math.isclose(pair.p_win, 1 / (1 + math.exp(-3.5)))


def test_random_pairs_are_seeded_and_ordered_by_reward():
    rewards = [0.3, -0.2, 1.1, 0.9, -2.0, 0.0, 0.5, 0.4]
    picks = {(p.winner, p.loser) for p in (select_pair(rewards, "random", "prompt", i) for i in range(30))}
    assert len(picks) > 5  # different prompts get different random pairs
    assert select_pair(rewards, "random", "x") == select_pair(rewards, "random", "x")
    for winner, loser in picks:
        assert rewards[winner] > rewards[loser]  # Eq. 10: the candidate with p > 0.5 wins


def test_equal_rewards_make_no_pair():
    assert select_pair([1.0, 1.0, 1.0], "best_worst", "p") is None


def test_needs_two_candidates():
    with pytest.raises(ValueError):
        select_pair([1.0], "best_worst")
