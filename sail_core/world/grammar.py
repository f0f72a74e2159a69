"""The prompt grammar of the embedded world.

A prompt always states colour, shape and count; position, size and background may be left unsaid
(``None``). Unsaid attributes are deliberate: web captions under-describe their images, so a base
model trained on them learns a broad distribution over what was not said, and preference learning
has something to sharpen.

The grammar is small and closed: ``PromptSpec.text()`` writes one canonical sentence per spec and
``parse_prompt`` reads exactly those sentences back (case and runs of whitespace are forgiven).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sail_core.errors import InputError

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "magenta", "cyan")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COUNTS: tuple[int, ...] = (1, 2)
POSITIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "centre")
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUNDS: tuple[str, ...] = ("black", "white", "gray")

# Default probabilities of leaving each optional attribute unsaid. One half keeps the base model's
# training distribution broad (half the captions say nothing about, e.g., size) while every stated
# value is still seen often.
DEFAULT_P_UNSAID = 0.5

_COUNT_WORDS: dict[int, str] = {1: "a", 2: "two"}
_PLURALS: dict[str, str] = {"circle": "circles", "square": "squares", "triangle": "triangles"}
_POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on", "the", "left"),
    "right": ("on", "the", "right"),
    "top": ("at", "the", "top"),
    "bottom": ("at", "the", "bottom"),
    "centre": ("in", "the", "centre"),
}


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for; ``None`` means the prompt does not say."""

    colour: str
    shape: str
    count: int
    position: str | None = None
    size: str | None = None
    background: str | None = None

    def __post_init__(self) -> None:
        _check_choice("colour", self.colour, COLOURS)
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("count", self.count, COUNTS)
        if self.position is not None:
            _check_choice("position", self.position, POSITIONS)
        if self.size is not None:
            _check_choice("size", self.size, SIZES)
        if self.background is not None:
            _check_choice("background", self.background, BACKGROUNDS)

    def text(self) -> str:
        """The canonical English prompt, e.g. 'two large blue squares on the left'."""
        words = [_COUNT_WORDS[self.count]]
        if self.size is not None:
            words.append(self.size)
        words.append(self.colour)
        words.append(self.shape if self.count == 1 else _PLURALS[self.shape])
        if self.position is not None:
            words.extend(_POSITION_PHRASES[self.position])
        if self.background is not None:
            words.extend(("on", "a", self.background, "background"))
        return " ".join(words)

    def stated(self) -> tuple[str, ...]:
        """Names of the attributes this prompt states, in a fixed order."""
        optional = (("position", self.position), ("size", self.size), ("background", self.background))
        return ("colour", "shape", "count") + tuple(name for name, value in optional if value is not None)


def _check_choice(name: str, value: object, allowed: Sequence[object]) -> None:
    # bool is an int subclass; a count of True must not pass as 1.
    if isinstance(value, bool) or value not in allowed:
        raise InputError(f"{value!r} is not one of {list(allowed)}", parameter=name)


def parse_prompt(text: str) -> PromptSpec:
    """Read a canonical prompt back into its spec; anything outside the grammar is a ValueError."""
    if not isinstance(text, str):
        raise InputError(f"prompt must be a string, got {type(text).__name__}", parameter="text")
    tokens = text.lower().split()

    def fail(reason: str) -> InputError:
        return InputError(f"prompt {text!r} is outside the world's grammar: {reason}", parameter="text")

    if not tokens:
        raise fail("it is empty")
    counts = {word: n for n, word in _COUNT_WORDS.items()}
    if tokens[0] not in counts:
        raise fail(f"it must start with one of {sorted(counts)}")
    count = counts[tokens[0]]
    i = 1
    size = None
    if i < len(tokens) and tokens[i] in SIZES:
        size = tokens[i]
        i += 1
    if i >= len(tokens) or tokens[i] not in COLOURS:
        raise fail(f"expected a colour ({', '.join(COLOURS)}) after {' '.join(tokens[:i])!r}")
    colour = tokens[i]
    i += 1
    nouns = {(_PLURALS[s] if count == 2 else s): s for s in SHAPES}
    if i >= len(tokens) or tokens[i] not in nouns:
        raise fail(f"expected one of {sorted(nouns)} after {' '.join(tokens[:i])!r}")
    shape = nouns[tokens[i]]
    i += 1
    position = None
    for name, phrase in _POSITION_PHRASES.items():
        if tuple(tokens[i : i + len(phrase)]) == phrase:
            position = name
            i += len(phrase)
            break
    background = None
    if i < len(tokens):
        rest = tokens[i:]
        if len(rest) == 4 and rest[:2] == ["on", "a"] and rest[2] in BACKGROUNDS and rest[3] == "background":
            background = rest[2]
            i += 4
        else:
            raise fail(f"cannot read {' '.join(rest)!r}")
    return PromptSpec(colour, shape, count, position, size, background)


def all_specs() -> tuple[PromptSpec, ...]:
    """Every prompt of the world (2,592) in a fixed order: colour, shape, count, size, position, background.

    The order never depends on anything but this code, so slicing it (or a seeded permutation of
    it) gives reproducible seed / per-round / held-out prompt splits.
    """
    optional_sizes = (None, *SIZES)
    optional_positions = (None, *POSITIONS)
    optional_backgrounds = (None, *BACKGROUNDS)
    return tuple(
        PromptSpec(colour, shape, count, position, size, background)
        for colour, shape, count, size, position, background in itertools.product(
            COLOURS, SHAPES, COUNTS, optional_sizes, optional_positions, optional_backgrounds
        )
    )


@dataclass(frozen=True)
class UnsaidProbabilities:
    """Probability that a sampled prompt leaves each optional attribute unsaid."""

    position: float = DEFAULT_P_UNSAID
    size: float = DEFAULT_P_UNSAID
    background: float = DEFAULT_P_UNSAID

    def __post_init__(self) -> None:
        for name in ("position", "size", "background"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0):
                raise InputError(f"probability must be in [0, 1], got {value!r}", parameter=f"p_unsaid.{name}")

    @classmethod
    def coerce(cls, value: UnsaidProbabilities | float) -> UnsaidProbabilities:
        """Accept a single float as 'the same probability for every optional attribute'."""
        if isinstance(value, UnsaidProbabilities):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls(float(value), float(value), float(value))
        raise InputError(f"expected UnsaidProbabilities or a float, got {value!r}", parameter="p_unsaid")


def sample_specs(
    rng: np.random.Generator,
    n: int,
    p_unsaid: UnsaidProbabilities | float = UnsaidProbabilities(),
    p_two: float = 0.5,
) -> list[PromptSpec]:
    """Draw ``n`` specs: colour and shape uniform, count 2 with ``p_two``, each optional attribute
    unsaid with its probability and otherwise uniform over its values. Vectorised: one rng call per
    attribute for the whole batch."""
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise InputError(f"n must be a non-negative integer, got {n!r}", parameter="n")
    if not 0.0 <= p_two <= 1.0:
        raise InputError(f"probability must be in [0, 1], got {p_two!r}", parameter="p_two")
    probs = UnsaidProbabilities.coerce(p_unsaid)
    n = int(n)
    colour = rng.integers(0, len(COLOURS), n)
    shape = rng.integers(0, len(SHAPES), n)
    two = rng.random(n) < p_two
    position = _optional_draw(rng, n, len(POSITIONS), probs.position)
    size = _optional_draw(rng, n, len(SIZES), probs.size)
    background = _optional_draw(rng, n, len(BACKGROUNDS), probs.background)
    return [
        PromptSpec(
            COLOURS[colour[i]],
            SHAPES[shape[i]],
            2 if two[i] else 1,
            POSITIONS[position[i]] if position[i] >= 0 else None,
            SIZES[size[i]] if size[i] >= 0 else None,
            BACKGROUNDS[background[i]] if background[i] >= 0 else None,
        )
        for i in range(n)
    ]


def _optional_draw(rng: np.random.Generator, n: int, n_values: int, p_unsaid: float) -> np.ndarray:
    """Index of a value, or -1 for 'unsaid'."""
    unsaid = rng.random(n) < p_unsaid
    value = rng.integers(0, n_values, n)
    return np.where(unsaid, -1, value)


def sample_spec(
    rng: np.random.Generator,
    p_unsaid: UnsaidProbabilities | float = UnsaidProbabilities(),
    p_two: float = 0.5,
) -> PromptSpec:
    """One spec; identical to ``sample_specs(rng, 1, ...)[0]`` so single and batched draws agree."""
    return sample_specs(rng, 1, p_unsaid, p_two)[0]


def as_spec(spec_or_text: PromptSpec | str) -> PromptSpec:
    """Let callers pass either a spec or its prompt text."""
    if isinstance(spec_or_text, PromptSpec):
        return spec_or_text
    if isinstance(spec_or_text, str):
        return parse_prompt(spec_or_text)
    raise InputError(f"expected a PromptSpec or prompt text, got {type(spec_or_text).__name__}", parameter="prompt")
