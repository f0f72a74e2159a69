"""The evaluation protocol: which images a model is judged on.

Every (prompt, seed index) gets a seed derived from the protocol seed and the prompt's text, so
every model of a comparison starts from the same noise for the same prompt: differences between
models are the models', not the noise's, and win rates compare like with like. The sampler, steps,
guidance, resolution and seeds are part of the protocol and are recorded with every result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sail_core.algorithm.sampler import NoisePredictor, sample_latents
from sail_core.config import EvalConfig
from sail_core.data.prompts import normalize_prompt
from sail_core.images import tensor_to_uint8
from sail_core.models.bundle import ModelBundle
from sail_core.seeding import derive_seed


@dataclass(frozen=True)
class EvalItem:
    prompt_index: int
    prompt: str
    category: str
    seed_index: int
    seed: int


def eval_items(prompts: Sequence[str], categories: Sequence[str], config: EvalConfig) -> list[EvalItem]:
    return [
        EvalItem(i, p, c, s, derive_seed("eval", config.seed, normalize_prompt(p), s))
        for i, (p, c) in enumerate(zip(prompts, categories))
        for s in range(config.seeds_per_prompt)
    ]


def protocol_record(bundle: ModelBundle, config: EvalConfig) -> dict[str, object]:
    """What must match for two evaluations to be comparable."""
    return {
        "sampler": config.sampler.kind, "steps": config.sampler.steps,
        "guidance_scale": config.sampler.guidance_scale, "eta": config.sampler.eta,
        "resolution": bundle.config.resolution, "seeds_per_prompt": config.seeds_per_prompt,
        "seed": config.seed,
    }


def generate_eval_images(
    predict: NoisePredictor,
    bundle: ModelBundle,
    items: Sequence[EvalItem],
    config: EvalConfig,
    dtype: torch.dtype = torch.float32,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """uint8 images [n, H, W, 3], one per item, decoded batch by batch."""
    prompts = list(dict.fromkeys(item.prompt for item in items))
    row = {p: i for i, p in enumerate(prompts)}
    conds = bundle.prompt_encoder.encode(prompts)
    uncond = bundle.prompt_encoder.unconditional()
    out = []
    step = config.sampler.batch_size
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        latents = sample_latents(predict, bundle, conds.select([row[i.prompt] for i in chunk]), uncond,
                                 [i.seed for i in chunk], config.sampler, dtype)
        out.append(tensor_to_uint8(bundle.codec.decode(latents.to(bundle.device))))
        if on_batch is not None:
            on_batch(len(chunk))
    return np.concatenate(out)
