"""The embedded world: procedural 16x16 text-to-image data and a hidden human judge.

No Stable Diffusion weights or human preference data can be downloaded where this project is
developed and tested, so it ships a small world of its own:

* ``grammar``: prompts such as "two large blue squares on the left" (2,592 in all);
* ``render``: the "web data" distribution of pictures for a prompt, and a fast renderer;
* ``analyse``: a pixel analyser, the judge's eyes (it never sees scene metadata);
* ``human``: the hidden human's utility, Bradley-Terry preference labels and metrics.

``layout`` holds what the words mean in pixels, shared by the sampler and the judge; ``raster``
holds the vectorised rasteriser.
"""

from sail_core.world.analyse import Analysis, DetectedObject, analyse
from sail_core.world.grammar import (
    BACKGROUNDS,
    COLOURS,
    COUNTS,
    POSITIONS,
    SHAPES,
    SIZES,
    PromptSpec,
    UnsaidProbabilities,
    all_specs,
    as_spec,
    parse_prompt,
    sample_spec,
    sample_specs,
)
from sail_core.world.human import (
    TIE,
    Judgement,
    WorldMetrics,
    evaluate,
    judge,
    judge_analysis,
    judge_batch,
    label_pair,
    label_pairs,
    label_utilities,
    preference_probability,
    summarise,
    utilities,
    win_rate,
)
from sail_core.world.layout import CANVAS
from sail_core.world.render import (
    Scene,
    SceneObject,
    render,
    render_batch,
    sample_batch,
    sample_images,
    sample_scene,
    sample_scenes,
)

__all__ = [
    "BACKGROUNDS",
    "CANVAS",
    "COLOURS",
    "COUNTS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "TIE",
    "Analysis",
    "DetectedObject",
    "Judgement",
    "PromptSpec",
    "Scene",
    "SceneObject",
    "UnsaidProbabilities",
    "WorldMetrics",
    "all_specs",
    "analyse",
    "as_spec",
    "evaluate",
    "judge",
    "judge_analysis",
    "judge_batch",
    "label_pair",
    "label_pairs",
    "label_utilities",
    "parse_prompt",
    "preference_probability",
    "render",
    "render_batch",
    "sample_batch",
    "sample_images",
    "sample_scene",
    "sample_scenes",
    "sample_spec",
    "sample_specs",
    "summarise",
    "utilities",
    "win_rate",
]
