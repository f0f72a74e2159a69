"""The prompt split: test and tuning prompts balanced over every attribute, disjoint, reproducible."""

from collections import Counter

import pytest

from sail_core.world.grammar import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, all_specs, parse_prompt
from sail_core.world.splits import split_prompts


def _counts(prompts, attribute):
    return Counter(getattr(parse_prompt(p), attribute) for p in prompts)


def test_test_and_tuning_prompts_are_balanced_over_every_attribute():
    split = split_prompts(4, 2, seed=0)
    assert (len(split.test), len(split.tune), len(split.labelled)) == (288, 144, 2592 - 432)
    for prompts, per_cell in ((split.test, 4), (split.tune, 2)):
        n = 72 * per_cell
        assert _counts(prompts, "colour") == {c: n // 6 for c in COLOURS}
        assert _counts(prompts, "shape") == {s: n // 3 for s in SHAPES}
        assert _counts(prompts, "count") == {1: n // 2, 2: n // 2}
        assert _counts(prompts, "position") == {p: n // 6 for p in (None, *POSITIONS)}
        assert _counts(prompts, "size") == {s: n // 3 for s in (None, *SIZES)}
        assert _counts(prompts, "background") == {b: n // 4 for b in (None, *BACKGROUNDS)}
    # every block of 72 test prompts (what a shorter evaluation takes first) is balanced on its own
    first = split.test[:72]
    assert _counts(first, "position") == {p: 12 for p in (None, *POSITIONS)}
    assert _counts(first, "colour") == {c: 12 for c in COLOURS}


def test_splits_are_disjoint_cover_the_grammar_and_are_reproducible():
    split = split_prompts(4, 2, seed=0)
    test, tune, labelled = set(split.test), set(split.tune), set(split.labelled)
    assert len(test) == len(split.test) and len(tune) == len(split.tune)  # no prompt twice
    assert not test & tune and not (test | tune) & labelled
    assert test | tune | labelled == {s.text() for s in all_specs()}
    assert split_prompts(4, 2, seed=0) == split
    other = split_prompts(4, 2, seed=1)
    assert set(other.test) != test


def test_impossible_splits_are_rejected_by_name():
    with pytest.raises(ValueError, match="test_per_cell"):
        split_prompts(0, 2)
    with pytest.raises(ValueError, match="test_per_cell"):
        split_prompts(30, 7)
