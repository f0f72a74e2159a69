"""Images of any model of a run (the base, iteration 0, any round), drawn with the run's own sampler.

The same code path as the run's evaluation (:func:`sail_core.algorithm.sampler.sample_latents` with
``eval.sampler``, per-sample seeds): an image here for a prompt and seed is the one the evaluation
would draw, and the one plain diffusers draws from the export with the same scheduler and seed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sail_core.algorithm.sampler import sample_latents
from sail_core.errors import InputError
from sail_core.export.run_contents import BASE_LABEL, FinishedRun, RunModel, fetch_weights
from sail_core.images import image_grid, tensor_to_uint8
from sail_core.models.bundle import cached_bundle
from sail_core.models.denoisers import load_policy

MAX_SEEDS = 64


def parse_seeds(text: str) -> list[int]:
    """``0-3`` → [0, 1, 2, 3]; ``0,5,9`` → [0, 5, 9]; ranges and lists mix (``0-1,7``)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise InputError(f"{text!r} is not a list of seeds: use e.g. 0-3 or 0,5,9", parameter="--seeds") from None
    if not seeds or len(seeds) > MAX_SEEDS or min(seeds) < 0:
        raise InputError(f"{text!r}: give 1 to {MAX_SEEDS} non-negative seeds", parameter="--seeds")
    return seeds


def pick_model(run: FinishedRun, spec: str) -> RunModel:
    """As :meth:`FinishedRun.choose`, and ``base`` too (to compare with)."""
    if spec.strip().lower() == BASE_LABEL:
        return run.model(BASE_LABEL)
    return run.choose(spec, run.config.export.metric).model


@torch.no_grad()
def sample_images(run: FinishedRun, model: RunModel, prompts: Sequence[str], seeds: Sequence[int],
                  device: str = "cpu") -> torch.Tensor:
    """Images [len(prompts) × len(seeds), 3, H, W] in [-1, 1], prompt-major (row p·S + s: prompt p, seed s)."""
    if not prompts:
        raise InputError("no prompts: pass --prompt TEXT (repeatable)", parameter="--prompt")
    config = run.config
    fetch_weights(run, model)
    bundle = cached_bundle(config.model, device)  # the frozen parts, once per process and model
    denoisers = load_policy(config.model, run.root, model.ref.checkpoint, device)
    cond = bundle.prompt_encoder.encode(list(prompts))
    rows = [p for p in range(len(prompts)) for _ in seeds]
    latents = sample_latents(denoisers.policy, bundle, cond.select(rows), bundle.prompt_encoder.unconditional(),
                             [int(s) for _ in prompts for s in seeds], config.eval.sampler, denoisers.dtype)
    return bundle.codec.decode(latents.to(bundle.device)).cpu()


def grid(images: torch.Tensor, columns: int) -> np.ndarray:
    """uint8 grid: one row per prompt, one column per seed (small images scaled up to ~128 px)."""
    tiles = tensor_to_uint8(images)
    return image_grid(list(tiles), columns=columns, scale=max(1, 128 // tiles.shape[1]))
