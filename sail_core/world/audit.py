"""What a world model draws, attribute by attribute, beside the renderer's own pictures of the same prompts.

For every attribute the grammar states, the rate at which the hidden human's check passes (the
fraction of objects that satisfy it, averaged over the images whose prompt states it), overall and
per stated value (e.g. position = left); and the strict all-correct rate, mean faithfulness, taste
and utility. The renderer's images are the web data the model was trained to imitate, so the gap
between the two columns is what the model has not learned; the renderer's own rate below 1 is the
analyser's error.

The model's images are those of the evaluation protocol (``eval.seed`` 0, ``seed_index`` 0, 1, …), so
an audit of the base model on the test prompts sees exactly the base row of ``sail run``'s evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sail_core.config import EvalConfig, SamplerConfig
from sail_core.evaluation.protocol import eval_items
from sail_core.seeding import derive_seed
from sail_core.world.grammar import as_spec
from sail_core.world.human import ATTRIBUTES, TASTE_TERMS, Judgement, judge_batch
from sail_core.world.model import generate
from sail_core.world.render import sample_images

DEFAULT_SAMPLER = SamplerConfig(kind="ddim", steps=10, guidance_scale=3.0, batch_size=256)
"""The ``world`` preset's sampler (labels, generation and evaluation all use it)."""


@dataclass(frozen=True)
class Rate:
    value: float
    n: int


def attribute_rates(prompts: Sequence[str], judgements: Sequence[Judgement]) -> dict[str, Rate]:
    """``<attribute>`` and ``<attribute>=<value>`` check rates, then ``faithful``, ``faithfulness``,
    ``taste``, each ``taste:<term>`` and ``utility`` (means over the images each applies to)."""
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for prompt, judgement in zip(prompts, judgements):
        spec = as_spec(prompt)
        for name, value in judgement.checks.items():
            add(name, value)
            add(f"{name}={getattr(spec, name)}", value)
        add("faithful", float(judgement.faithful))
        add("faithfulness", judgement.faithfulness)
        add("taste", judgement.taste)
        add("utility", judgement.utility)
        for name, value in judgement.taste_terms.items():
            add(f"taste:{name}", value)
    order = [*ATTRIBUTES, *sorted(k for k in rows if "=" in k), "faithful", "faithfulness", "taste",
             *(f"taste:{t}" for t in TASTE_TERMS), "utility"]
    return {k: Rate(float(np.mean(rows[k])), len(rows[k])) for k in order if k in rows}


def audit(model_dir: str | Path, prompts: Sequence[str], seeds_per_prompt: int = 2, render_seed: int = 0,
          sampler: SamplerConfig = DEFAULT_SAMPLER) -> dict[str, dict[str, Rate]]:
    """``{"model": rates, "renderer": rates}`` on the same (prompt, seed) list."""
    items = eval_items(prompts, ["world"] * len(prompts), EvalConfig(seeds_per_prompt=seeds_per_prompt))
    repeated, seeds = [i.prompt for i in items], [i.seed for i in items]
    model_images = generate(model_dir, repeated, seeds, sampler)
    web_images = sample_images(repeated, np.random.default_rng(derive_seed("world-audit-render", render_seed)))
    return {"model": attribute_rates(repeated, judge_batch(repeated, model_images)),
            "renderer": attribute_rates(repeated, judge_batch(repeated, web_images))}


def audit_markdown(result: dict[str, dict[str, Rate]]) -> str:
    columns = list(result)
    keys = list(dict.fromkeys(k for rates in result.values() for k in rates))
    lines = ["| check | images | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for key in keys:
        n = next(r[key].n for r in result.values() if key in r)
        cells = [f"{result[c][key].value:.3f}" if key in result[c] else "–" for c in columns]
        lines.append(f"| {key} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
