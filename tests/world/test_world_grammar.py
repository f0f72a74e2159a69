import numpy as np
import pytest

from sail_core.world.grammar import (
    PromptSpec,
    UnsaidProbabilities,
    all_specs,
    as_spec,
    parse_prompt,
    sample_spec,
    sample_specs,
)


def test_all_specs_is_a_fixed_universe_of_distinct_prompts():
    specs = all_specs()
    assert len(specs) == 6 * 3 * 2 * 3 * 6 * 4 == 2592
    assert len(set(specs)) == 2592
    assert len({s.text() for s in specs}) == 2592
    assert specs == all_specs()
    assert specs[0] == PromptSpec("red", "circle", 1)
    assert specs[-1] == PromptSpec("cyan", "triangle", 2, "centre", "large", "gray")


@pytest.mark.parametrize(
    "spec, text",
    [
        (PromptSpec("red", "circle", 1), "a red circle"),
        (PromptSpec("blue", "square", 2, "left", "large"), "two large blue squares on the left"),
        (
            PromptSpec("yellow", "triangle", 1, "top", "small", "black"),
            "a small yellow triangle at the top on a black background",
        ),
        (
            PromptSpec("cyan", "circle", 2, "centre", None, "gray"),
            "two cyan circles in the centre on a gray background",
        ),
        (PromptSpec("green", "triangle", 1, "bottom"), "a green triangle at the bottom"),
    ],
)
def test_text_is_canonical_english(spec, text):
    assert spec.text() == text
    assert parse_prompt(text) == spec


def test_parse_inverts_text_for_every_spec():
    for spec in all_specs():
        assert parse_prompt(spec.text()) == spec


def test_parse_forgives_case_and_whitespace_only():
    assert parse_prompt("  Two  LARGE blue squares\ton the left ") == PromptSpec("blue", "square", 2, "left", "large")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a red circles",
        "two red circle",
        "an red circle",
        "three red circles",
        "a purple circle",
        "a red hexagon",
        "a red circle on the moon",
        "a red circle on a black background on the left",
        "a red circle on the left on the left",
        "a large small red circle",
        "red circle",
    ],
)
def test_parse_rejects_text_outside_the_grammar_naming_it(text):
    with pytest.raises(ValueError) as info:
        parse_prompt(text)
    assert repr(text) in str(info.value)


def test_spec_rejects_unknown_values_naming_them():
    with pytest.raises(ValueError, match="purple"):
        PromptSpec("purple", "circle", 1)
    with pytest.raises(ValueError, match="3"):
        PromptSpec("red", "circle", 3)
    with pytest.raises(ValueError, match="True"):
        PromptSpec("red", "circle", True)
    with pytest.raises(ValueError, match="middle"):
        PromptSpec("red", "circle", 1, position="middle")
    with pytest.raises(ValueError):
        as_spec(42)


def test_stated_lists_the_attributes_a_prompt_states():
    assert PromptSpec("red", "circle", 1).stated() == ("colour", "shape", "count")
    assert PromptSpec("red", "circle", 1, "left", None, "gray").stated() == (
        "colour", "shape", "count", "position", "background",
    )


def test_sample_spec_is_deterministic_for_a_seed():
    a = sample_specs(np.random.default_rng(7), 200)
    b = sample_specs(np.random.default_rng(7), 200)
    c = sample_specs(np.random.default_rng(8), 200)
    assert a == b
    assert sum(x != y for x, y in zip(a, c)) > 150
    assert sample_spec(np.random.default_rng(3)) == sample_specs(np.random.default_rng(3), 1)[0]


def test_unsaid_probabilities_are_honoured():
    n = 4000
    stated = lambda specs, name: np.mean([getattr(s, name) is not None for s in specs])  # noqa: E731
    everything = sample_specs(np.random.default_rng(0), 500, p_unsaid=0.0)
    assert all(len(s.stated()) == 6 for s in everything)
    nothing = sample_specs(np.random.default_rng(0), 500, p_unsaid=1.0)
    assert all(len(s.stated()) == 3 for s in nothing)
    mixed = sample_specs(np.random.default_rng(0), n, UnsaidProbabilities(position=0.2, size=0.5, background=0.9))
    tolerance = 4 * np.sqrt(0.25 / n)
    assert abs(stated(mixed, "position") - 0.8) < tolerance
    assert abs(stated(mixed, "size") - 0.5) < tolerance
    assert abs(stated(mixed, "background") - 0.1) < tolerance
    assert abs(np.mean([s.count == 2 for s in mixed]) - 0.5) < tolerance
    assert {s.colour for s in mixed} == {"red", "green", "blue", "yellow", "magenta", "cyan"}


def test_bad_unsaid_probabilities_are_rejected_by_name():
    with pytest.raises(ValueError, match="p_unsaid.size"):
        UnsaidProbabilities(size=1.5)
    with pytest.raises(ValueError, match="p_unsaid"):
        sample_specs(np.random.default_rng(0), 3, p_unsaid="often")
    with pytest.raises(ValueError, match="'n'"):
        sample_specs(np.random.default_rng(0), -1)
