"""The hidden human: a utility over (prompt, image) that the model should learn to please.

The human looks only at pixels (through ``analyse``) and at the prompt. Utility mixes
*faithfulness* (does the image show what was asked) with *taste* (preferences nobody writes in a
caption). Taste has two global terms, a clean background and sharp edges, and three that depend on
the prompt's words, each counted only where the prompt leaves its attribute open:

* ``size``: circles look best as large as they get, triangles a little above the middle of the
  range, squares small;
* ``placement``: circles high, squares in the middle, triangles low (always centred left to right);
* ``contrast``: the background whose luminance differs most from the object's colour (yellow and
  cyan on black, red, blue and magenta on white; green is as good on either; grey is never best).

Web captions never mention taste and leave size, position and background open, so the base model
samples those at random; and because the best size, place and background differ with the shape and
colour words, no single global style wins: a preference learner has to learn them per prompt from
Bradley-Terry labels drawn from this utility.

Taste terms are smooth and strictly monotone in what they measure; faithfulness checks are
per-object fractions where they can be, so fixing one of two objects already counts. Improving
any single aspect of an image therefore never lowers its utility, and usually raises it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sail_core.errors import InputError
from sail_core.world.analyse import Analysis, analyse
from sail_core.world.grammar import BACKGROUNDS, COLOURS, PromptSpec, as_spec
from sail_core.world.layout import (
    BACKGROUND_ARRAY,
    CANVAS_CENTRE,
    PALETTE_ARRAY,
    UNSAID_SIZE_RANGE,
    in_position,
    max_size_for_count,
    size_class,
)

# Utility = FAITHFULNESS_WEIGHT * faithfulness + TASTE_WEIGHT * taste. Faithfulness leads: failing
# one of the three always-stated attributes (-1/3 faithfulness = -0.217 utility) outweighs the taste
# gap between two web images of the same prompt 99% of the time (measured on 2,000 sampled prompts:
# median gap 0.15 taste, 99th percentile 0.62 = 0.22 utility), while taste still decides most pairs
# of faithful images.
FAITHFULNESS_WEIGHT = 0.65
TASTE_WEIGHT = 0.35
# Global taste terms are 1 / (1 + (x / scale)^2): flat at a perfect image, halved at ``scale``.
NOISE_SCALE = 0.05  # background noise std, [0, 1] units (web images: 0 to 0.15)
BLUR_SCALE = 0.6  # fitted edge blur, pixels (web images: 0, or 0.4 to 1.0)
# Prompt-dependent taste. The preferred size is a fraction of the range web data draws for the
# prompt's count (3-10 px for one object, 3-7 px for two), scored linearly in the distance to it
# over that range's width.
PREFERRED_SIZE: dict[str, float] = {"circle": 1.0, "triangle": 0.6, "square": 0.2}
# The preferred height of the group centroid (pixels from the top; x is always the centre), scored
# 1 / (1 + (d / PLACEMENT_SCALE)^2) in the distance d from (centre, height).
PREFERRED_HEIGHT: dict[str, float] = {"circle": 5.5, "square": 8.0, "triangle": 10.5}
PLACEMENT_SCALE = 3.0
# Rec. 601 luma weights: contrast is the luminance difference between object and background.
LUMA = np.array([0.299, 0.587, 0.114])
# Bradley-Terry labelling defaults: a utility gap of 0.05 is preferred 73% of the time, 0.1 88%.
DEFAULT_TEMPERATURE = 0.05
# Pairs closer than this are dropped as ties (Pick-a-Pic drops tied comparisons).
DEFAULT_TIE_MARGIN = 0.01
# Marker for a tie in batched label arrays.
TIE = -1
ATTRIBUTES = ("colour", "shape", "count", "position", "size", "background")
"""The faithfulness checks, in the order reports show them (a prompt states the first three always)."""
TASTE_TERMS = ("clean", "sharp", "size", "placement", "contrast")
"""The taste terms, in the order reports show them (the last three only where the prompt is silent)."""


@dataclass(frozen=True)
class Judgement:
    """The human's view of one (prompt, image)."""

    faithfulness: float  # mean satisfaction of the prompt's stated attributes, [0, 1]
    faithful: bool  # every stated attribute fully satisfied
    taste: float  # mean of the applicable taste terms, [0, 1]
    utility: float  # FAITHFULNESS_WEIGHT * faithfulness + TASTE_WEIGHT * taste
    checks: dict[str, float]  # per stated attribute, in [0, 1]
    taste_terms: dict[str, float]  # per applicable taste term, in [0, 1]
    analysis: Analysis


def _soft(x: float, scale: float) -> float:
    return 1.0 / (1.0 + (x / scale) ** 2)


def _fraction(flags: Sequence[bool]) -> float:
    return float(np.mean(flags)) if len(flags) else 0.0


def _checks(spec: PromptSpec, analysis: Analysis) -> dict[str, float]:
    """Satisfaction of each stated attribute. Per-object attributes score the fraction of detected
    objects that satisfy them, so fixing one of two objects already counts."""
    objects = analysis.objects
    checks = {
        "colour": _fraction([o.colour == spec.colour for o in objects]),
        "shape": _fraction([o.shape == spec.shape for o in objects]),
        "count": float(len(objects) == spec.count),
    }
    if spec.position is not None:
        if not objects:
            checks["position"] = 0.0
        elif spec.position == "centre":
            gx = float(np.mean([o.x for o in objects]))
            gy = float(np.mean([o.y for o in objects]))
            checks["position"] = float(in_position("centre", gx, gy))
        else:
            checks["position"] = _fraction([in_position(spec.position, o.x, o.y) for o in objects])
    if spec.size is not None:
        checks["size"] = _fraction([size_class(o.size) == spec.size for o in objects])
    if spec.background is not None:
        checks["background"] = float(analysis.background == spec.background)
    return checks


def _luminance(rgb: np.ndarray | Sequence[float]) -> float | np.ndarray:
    """Luminance in [0, 1] of 0-255 RGB (last axis)."""
    return np.asarray(rgb, np.float64) @ LUMA / 255.0


# For each colour (in COLOURS order), the largest luminance difference any named background gives it.
BEST_CONTRAST = np.abs(_luminance(PALETTE_ARRAY)[:, None] - _luminance(BACKGROUND_ARRAY)[None, :]).max(axis=1)
BEST_CONTRAST.flags.writeable = False


def preferred_size(spec: PromptSpec) -> float:
    """The size (pixels) the human likes best for an unsaid size: it depends on the shape word."""
    lo, hi = UNSAID_SIZE_RANGE[0], max_size_for_count(spec.count)
    return lo + PREFERRED_SIZE[spec.shape] * (hi - lo)


def preferred_place(spec: PromptSpec) -> tuple[float, float]:
    """The group centroid (x, y) the human likes best for an unsaid position: it depends on the shape word."""
    return CANVAS_CENTRE, PREFERRED_HEIGHT[spec.shape]


def preferred_background(spec: PromptSpec) -> str:
    """The named background of most contrast with the prompt's colour (ties: the first in BACKGROUNDS)."""
    contrast = np.abs(_luminance(BACKGROUND_ARRAY) - _luminance(PALETTE_ARRAY[COLOURS.index(spec.colour)]))
    return BACKGROUNDS[int(contrast.argmax())]


def _taste_terms(spec: PromptSpec, analysis: Analysis) -> dict[str, float]:
    """Unstated preferences; size, placement and contrast count only where the prompt leaves them open."""
    objects = analysis.objects
    terms = {
        "clean": _soft(analysis.background_noise, NOISE_SCALE),
        "sharp": _soft(analysis.edge_blur, BLUR_SCALE) if objects else 0.0,
    }
    if spec.size is None:
        width = max_size_for_count(spec.count) - UNSAID_SIZE_RANGE[0]
        target = preferred_size(spec)
        fit = [np.clip(1.0 - abs(o.size - target) / width, 0.0, 1.0) for o in objects]
        terms["size"] = float(np.mean(fit)) if objects else 0.0
    if spec.position is None:
        if objects:
            gx = float(np.mean([o.x for o in objects]))
            gy = float(np.mean([o.y for o in objects]))
            tx, ty = preferred_place(spec)
            terms["placement"] = _soft(float(np.hypot(gx - tx, gy - ty)), PLACEMENT_SCALE)
        else:
            terms["placement"] = 0.0
    if spec.background is None:
        best = BEST_CONTRAST[COLOURS.index(spec.colour)]
        background = _luminance(analysis.background_rgb)
        contrast = [min(1.0, abs(_luminance(o.rgb) - background) / best) for o in objects]
        terms["contrast"] = float(np.mean(contrast)) if objects else 0.0
    return terms


def judge_analysis(spec_or_text: PromptSpec | str, analysis: Analysis) -> Judgement:
    """Judge an already analysed image (lets callers analyse once and judge against many prompts)."""
    spec = as_spec(spec_or_text)
    checks = _checks(spec, analysis)
    terms = _taste_terms(spec, analysis)
    faithfulness = float(np.mean(list(checks.values())))
    taste = float(np.mean(list(terms.values())))
    return Judgement(
        faithfulness=faithfulness,
        faithful=all(v == 1.0 for v in checks.values()),
        taste=taste,
        utility=FAITHFULNESS_WEIGHT * faithfulness + TASTE_WEIGHT * taste,
        checks=checks,
        taste_terms=terms,
        analysis=analysis,
    )


def judge(spec_or_text: PromptSpec | str, image: np.ndarray) -> Judgement:
    """The hidden human's judgement of one image for one prompt."""
    return judge_analysis(spec_or_text, analyse(image))


def _check_pairs(prompts: Sequence[object], images: np.ndarray, name: str = "images") -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        got = getattr(images, "shape", type(images).__name__)
        raise InputError(f"{name} must be a uint8 [n, H, W, 3] array, got {got}", parameter=name)
    if len(prompts) != images.shape[0]:
        raise InputError(f"{len(prompts)} prompts but {images.shape[0]} images", parameter=name)


def judge_batch(prompts: Sequence[PromptSpec | str], images: np.ndarray) -> list[Judgement]:
    """One judgement per (prompt, image) pair; prompts are parsed once each."""
    _check_pairs(prompts, images)
    specs = [as_spec(p) for p in prompts]
    return [judge(s, im) for s, im in zip(specs, images)]


def utilities(prompts: Sequence[PromptSpec | str], images: np.ndarray) -> np.ndarray:
    """float64 [n] utilities."""
    return np.array([j.utility for j in judge_batch(prompts, images)], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Preference labels


def _check_labelling(temperature: float, tie_margin: float) -> None:
    if not temperature > 0:
        raise InputError(f"temperature must be > 0, got {temperature!r}", parameter="temperature")
    if not tie_margin >= 0:
        raise InputError(f"tie_margin must be >= 0, got {tie_margin!r}", parameter="tie_margin")


def preference_probability(
    utility_a: np.ndarray | float,
    utility_b: np.ndarray | float,
    temperature: float = DEFAULT_TEMPERATURE,
) -> np.ndarray:
    """Bradley-Terry P(a preferred over b) = sigmoid((u_a - u_b) / temperature)."""
    _check_labelling(temperature, 0.0)
    z = (np.asarray(utility_a, np.float64) - np.asarray(utility_b, np.float64)) / temperature
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = sigmoid(z), without overflow for large |z|


def label_utilities(
    utility_a: np.ndarray,
    utility_b: np.ndarray,
    rng: np.random.Generator,
    temperature: float = DEFAULT_TEMPERATURE,
    tie_margin: float = DEFAULT_TIE_MARGIN,
) -> np.ndarray:
    """int8 [n] labels: 0 = a preferred, 1 = b preferred, TIE (-1) = near-tie, dropped.

    Exactly one uniform is drawn per pair, ties included, so a pair's label does not depend on
    which other pairs share its batch or on how many of them tied.
    """
    _check_labelling(temperature, tie_margin)
    ua = np.asarray(utility_a, np.float64).reshape(-1)
    ub = np.asarray(utility_b, np.float64).reshape(-1)
    if ua.shape != ub.shape:
        raise InputError(f"utility arrays differ in length: {ua.shape} vs {ub.shape}", parameter="utility_b")
    draws = rng.random(ua.shape[0])
    labels = np.where(draws < preference_probability(ua, ub, temperature), 0, 1).astype(np.int8)
    labels[np.abs(ua - ub) < tie_margin] = TIE
    return labels


def expected_agreement(utility_a: np.ndarray, utility_b: np.ndarray, temperature: float,
                       tie_margin: float = DEFAULT_TIE_MARGIN) -> float:
    """How often a Bradley-Terry label at ``temperature`` agrees with the utility ordering, in
    expectation over the pairs that are not ties: mean of sigmoid(|u_a - u_b| / T)."""
    gap = np.abs(np.asarray(utility_a, np.float64) - np.asarray(utility_b, np.float64))
    gap = gap[gap >= tie_margin]
    if gap.size == 0:
        raise InputError("every pair is a tie: nothing to calibrate on", parameter="utility_b")
    return float(preference_probability(gap, 0.0, temperature).mean())


def calibrate_temperature(utility_a: np.ndarray, utility_b: np.ndarray, agreement: float,
                          tie_margin: float = DEFAULT_TIE_MARGIN) -> float:
    """The temperature at which decided labels agree with the utility ordering ``agreement`` of the
    time on these pairs (bisection on log T; the expected agreement falls as T grows)."""
    if not 0.5 < agreement < 1.0:
        raise InputError(f"agreement must be in (0.5, 1), got {agreement!r}", parameter="agreement")
    lo, hi = np.log(1e-5), np.log(10.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if expected_agreement(utility_a, utility_b, float(np.exp(mid)), tie_margin) > agreement:
            lo = mid
        else:
            hi = mid
    return float(np.exp(0.5 * (lo + hi)))


def label_pair(
    spec_or_text: PromptSpec | str,
    image_a: np.ndarray,
    image_b: np.ndarray,
    rng: np.random.Generator,
    temperature: float = DEFAULT_TEMPERATURE,
    tie_margin: float = DEFAULT_TIE_MARGIN,
) -> int | None:
    """One human preference: 0 if a is preferred, 1 if b, None for a near-tie (dropped)."""
    spec = as_spec(spec_or_text)
    ua, ub = judge(spec, image_a).utility, judge(spec, image_b).utility
    label = int(label_utilities(np.array([ua]), np.array([ub]), rng, temperature, tie_margin)[0])
    return None if label == TIE else label


def label_pairs(
    prompts: Sequence[PromptSpec | str],
    images_a: np.ndarray,
    images_b: np.ndarray,
    rng: np.random.Generator,
    temperature: float = DEFAULT_TEMPERATURE,
    tie_margin: float = DEFAULT_TIE_MARGIN,
) -> np.ndarray:
    """Batched ``label_pair``: int8 [n] with TIE (-1) for near-ties; same rng use as n single calls."""
    _check_pairs(prompts, images_a, "images_a")
    _check_pairs(prompts, images_b, "images_b")
    return label_utilities(utilities(prompts, images_a), utilities(prompts, images_b), rng, temperature, tie_margin)


# ----------------------------------------------------------------------------------------------
# Metrics


@dataclass(frozen=True)
class WorldMetrics:
    """Aggregate scores of a set of (prompt, image) pairs."""

    n: int
    mean_utility: float
    faithfulness_accuracy: float  # fraction of images that are fully faithful
    mean_faithfulness: float
    mean_taste: float


def summarise(judgements: Sequence[Judgement]) -> WorldMetrics:
    if not judgements:
        raise InputError("cannot summarise zero judgements", parameter="judgements")
    return WorldMetrics(
        n=len(judgements),
        mean_utility=float(np.mean([j.utility for j in judgements])),
        faithfulness_accuracy=float(np.mean([j.faithful for j in judgements])),
        mean_faithfulness=float(np.mean([j.faithfulness for j in judgements])),
        mean_taste=float(np.mean([j.taste for j in judgements])),
    )


def evaluate(prompts: Sequence[PromptSpec | str], images: np.ndarray) -> WorldMetrics:
    """Judge every (prompt, image) and summarise."""
    return summarise(judge_batch(prompts, images))


def win_rate(utilities_model: np.ndarray, utilities_base: np.ndarray, tolerance: float = 1e-3) -> float:
    """Mean over paired (prompt, seed) samples of 1 (model better), 0.5 (within tolerance), 0 (worse)."""
    m = np.asarray(utilities_model, np.float64).reshape(-1)
    b = np.asarray(utilities_base, np.float64).reshape(-1)
    if m.shape != b.shape:
        raise InputError(f"paired utilities differ in length: {m.shape} vs {b.shape}", parameter="utilities_base")
    if m.size == 0:
        raise InputError("cannot compute a win rate over zero pairs", parameter="utilities_model")
    if not tolerance >= 0:
        raise InputError(f"tolerance must be >= 0, got {tolerance!r}", parameter="tolerance")
    diff = m - b
    score = np.where(np.abs(diff) <= tolerance, 0.5, np.where(diff > 0, 1.0, 0.0))
    return float(score.mean())
