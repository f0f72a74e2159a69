"""The world's human preference data: pairs of base-model samples labelled by the hidden human.

As in Pick-a-Pic, both images of a pair are the model's samples for the same prompt, and the label
is a noisy human choice: a Bradley–Terry draw from the hidden utility, with near-ties recorded as
ties (0.5/0.5) that readers drop. The file is written in the published Pick-a-Pic v2 schema (PNG
bytes in ``jpg_0``/``jpg_1``), so it goes through the same reader as the real data.

The world's prompts are split once: held-out evaluation prompts (never labelled, never used by a
round) and the rest, every one of which is labelled at least once; later rounds draw from the
labelled prompts that the seed subset did not take, as the paper does with Pick-a-Pic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from sail_core.algorithm.sampler import sample_latents
from sail_core.config import ModelConfig, SamplerConfig
from sail_core.data.pickapic import PICKAPIC_V2_SCHEMA
from sail_core.images import encode_png, tensor_to_uint8
from sail_core.io.atomic import write_text
from sail_core.io.tables import write_table
from sail_core.models.bundle import load_bundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import load_for_inference
from sail_core.seeding import derive_seed
from sail_core.world.grammar import all_specs
from sail_core.world.human import TIE, label_pairs, utilities


@dataclass(frozen=True)
class LabelConfig:
    n_pairs: int = 4000
    n_eval_prompts: int = 192
    seed: int = 0
    sampler: SamplerConfig = SamplerConfig(kind="ddim", steps=10, guidance_scale=3.0, batch_size=256)


def split_prompts(n_eval: int, seed: int) -> tuple[list[str], list[str]]:
    """(labelled prompts, held-out evaluation prompts), a seeded split of the whole grammar."""
    texts = [s.text() for s in all_specs()]
    order = np.random.default_rng(derive_seed("world-prompt-split", seed)).permutation(len(texts))
    return [texts[i] for i in order[n_eval:]], [texts[i] for i in order[:n_eval]]


def world_model_config(folder: str | Path) -> ModelConfig:
    return ModelConfig(family="sd15", source=str(folder), codec="pixel", resolution=16, local_files_only=True)


def build_labels(model_dir: Path, config: LabelConfig, out: Path, eval_prompts_out: Path,
                 *, overwrite: bool = False) -> dict[str, float]:
    labelled, held_out = split_prompts(config.n_eval_prompts, config.seed)
    rng = np.random.default_rng(derive_seed("world-label-prompts", config.seed))
    extra = rng.choice(len(labelled), max(0, config.n_pairs - len(labelled)), replace=True)
    prompts = (labelled + [labelled[i] for i in extra])[: config.n_pairs]
    model = world_model_config(model_dir)
    bundle = load_bundle(model)
    base = load_for_inference(model, ".", UnetCheckpoint(), UnetCheckpoint())
    conds = bundle.prompt_encoder.encode(prompts)
    uncond = bundle.prompt_encoder.unconditional()
    images = []
    for side in (0, 1):
        seeds = [derive_seed("world-labels", config.seed, i, side) for i in range(len(prompts))]
        latents = sample_latents(base.policy, bundle, conds, uncond, seeds, config.sampler)
        images.append(tensor_to_uint8(bundle.codec.decode(latents)))
    labels = label_pairs(prompts, images[0], images[1], np.random.default_rng(derive_seed("world-judge", config.seed)))
    label_0 = np.where(labels == TIE, 0.5, np.where(labels == 0, 1.0, 0.0))
    n = len(prompts)
    table = pa.table({
        "are_different": [True] * n, "best_image_uid": [f"w{i}-{int(label)}" for i, label in enumerate(labels)],
        "caption": prompts, "created_at": pa.array([0] * n, pa.timestamp("ns")), "has_label": [True] * n,
        "image_0_uid": [f"w{i}-0" for i in range(n)], "image_0_url": [""] * n,
        "image_1_uid": [f"w{i}-1" for i in range(n)], "image_1_url": [""] * n,
        "jpg_0": [encode_png(a) for a in images[0]], "jpg_1": [encode_png(b) for b in images[1]],
        "label_0": label_0, "label_1": 1.0 - label_0,
        "model_0": ["world-base"] * n, "model_1": ["world-base"] * n, "ranking_id": list(range(n)),
        "user_id": [0] * n, "num_example_per_prompt": [1] * n, "__index_level_0__": list(range(n)),
    }, schema=PICKAPIC_V2_SCHEMA)
    write_table(out, table, metadata={"world_labels": str(asdict(config))}, overwrite=overwrite)
    write_text(eval_prompts_out, "\n".join(held_out) + "\n", overwrite=overwrite)
    u0, u1 = utilities(prompts, images[0]), utilities(prompts, images[1])
    decided = labels != TIE
    agree = ((labels == 0) == (u0 > u1))[decided].mean()
    return {"pairs": n, "ties": int((~decided).sum()), "label_agreement_with_utility": float(agree),
            "mean_base_utility": float(np.concatenate([u0, u1]).mean())}
