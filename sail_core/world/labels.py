"""The world's human preference data: pairs of base-model samples labelled by the hidden human.

As in Pick-a-Pic, both images of a pair are the model's samples for the same prompt, and the label
is a noisy human choice: a Bradley–Terry draw from the hidden utility, with near-ties recorded as
ties (0.5/0.5) that readers drop. The file is written in the published Pick-a-Pic v2 schema (PNG
bytes in ``jpg_0``/``jpg_1``), so it goes through the same reader as the real data.

The world's prompts are split once (``splits``): held-out test and tuning prompts (never labelled,
never used by a round) and the rest, every one of which is labelled at least once; later rounds draw
from the labelled prompts that the seed subset did not take, as the paper does with Pick-a-Pic.

The human's noise is calibrated: the Bradley–Terry temperature is chosen so that the decided labels
agree with the utility ordering ``target_agreement`` of the time in expectation over these pairs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from sail_core.config import SamplerConfig
from sail_core.data.pickapic import PICKAPIC_V2_SCHEMA
from sail_core.images import encode_png
from sail_core.io.atomic import write_text
from sail_core.io.tables import write_table
from sail_core.seeding import derive_seed
from sail_core.world.human import DEFAULT_TIE_MARGIN, TIE, calibrate_temperature, label_utilities, utilities
from sail_core.world.model import generate
from sail_core.world.splits import PromptSplit, split_prompts


@dataclass(frozen=True)
class SplitConfig:
    test_per_cell: int = 4
    tune_per_cell: int = 2
    seed: int = 0

    def split(self) -> PromptSplit:
        return split_prompts(self.test_per_cell, self.tune_per_cell, self.seed)


@dataclass(frozen=True)
class LabelConfig:
    n_pairs: int = 4000
    seed: int = 0
    target_agreement: float = 0.8
    tie_margin: float = DEFAULT_TIE_MARGIN
    split: SplitConfig = SplitConfig()
    sampler: SamplerConfig = SamplerConfig(kind="ddim", steps=10, guidance_scale=3.0, batch_size=256)


def build_labels(model_dir: Path, config: LabelConfig, out: Path, eval_prompts_out: Path, tune_prompts_out: Path,
                 *, overwrite: bool = False) -> dict[str, float]:
    split = config.split.split()
    labelled = list(split.labelled)
    rng = np.random.default_rng(derive_seed("world-label-prompts", config.seed))
    extra = rng.choice(len(labelled), max(0, config.n_pairs - len(labelled)), replace=True)
    prompts = (labelled + [labelled[i] for i in extra])[: config.n_pairs]
    images = [generate(model_dir, prompts, [derive_seed("world-labels", config.seed, i, side)
                                            for i in range(len(prompts))], config.sampler)
              for side in (0, 1)]
    u0, u1 = utilities(prompts, images[0]), utilities(prompts, images[1])
    temperature = calibrate_temperature(u0, u1, config.target_agreement, config.tie_margin)
    labels = label_utilities(u0, u1, np.random.default_rng(derive_seed("world-judge", config.seed)), temperature,
                             config.tie_margin)
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
    decided = labels != TIE
    stats = {"pairs": n, "ties": int((~decided).sum()), "temperature": temperature,
             "label_agreement_with_utility": float(((labels == 0) == (u0 > u1))[decided].mean()),
             "mean_base_utility": float(np.concatenate([u0, u1]).mean())}
    write_table(out, table, metadata={"world_labels": str(asdict(config)), "world_label_stats": str(stats)},
                overwrite=overwrite)
    write_text(eval_prompts_out, "\n".join(split.test) + "\n", overwrite=overwrite)
    write_text(tune_prompts_out, "\n".join(split.tune) + "\n", overwrite=overwrite)
    return stats
