"""Builders shared by the tests: Pick-a-Pic-schema files, small configs for the tiny models, stage contexts."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from sail_core.config import SailConfig
from sail_core.data.pickapic import PICKAPIC_V2_SCHEMA
from sail_core.run.layout import RunLayout
from sail_core.run.stage import StageContext


def jpeg_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    array = np.zeros((size[1], size[0], 3), np.uint8)
    array[...] = colour
    array[size[1] // 4 : size[1] // 2, size[0] // 4 : size[0] // 2] = 255 - np.asarray(colour, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()





def write_pickapic(path: Path, captions: list[str], labels: list[tuple[float, float]],
                   has_label: list[bool] | None = None, images: list[tuple[bytes, bytes]] | None = None,
                   row_group_size: int | None = None) -> Path:
    n = len(captions)
    has_label = has_label if has_label is not None else [True] * n
    images = images if images is not None else [
        (jpeg_bytes((20 * i % 256, 40, 90)), jpeg_bytes((200, 20 * i % 256, 30))) for i in range(n)]
    table = pa.table({
        "are_different": [True] * n, "best_image_uid": [f"uid{i}" for i in range(n)], "caption": captions,
        "created_at": pa.array([0] * n, pa.timestamp("ns")), "has_label": has_label,
        "image_0_uid": [f"a{i}" for i in range(n)], "image_0_url": [""] * n,
        "image_1_uid": [f"b{i}" for i in range(n)], "image_1_url": [""] * n,
        "jpg_0": [a for a, _ in images], "jpg_1": [b for _, b in images],
        "label_0": [a for a, _ in labels], "label_1": [b for _, b in labels],
        "model_0": ["m"] * n, "model_1": ["m"] * n, "ranking_id": list(range(n)), "user_id": [1] * n,
        "num_example_per_prompt": [1] * n, "__index_level_0__": list(range(n)),
    }, schema=PICKAPIC_V2_SCHEMA)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def standard_pickapic(path: Path, n: int = 24) -> Path:
    """n rows cycling through winner 0, winner 1 and a tie."""
    labels = [[(1.0, 0.0), (0.0, 1.0), (0.5, 0.5)][i % 3] for i in range(n)]
    return write_pickapic(path, [f"a picture of thing number {i}" for i in range(n)], labels, row_group_size=5)


def tiny_config(family: str, folder: Path, pairs: Path, pool: Path, train_mode: str = "full",
                **overrides) -> SailConfig:
    data = dict(
        model=dict(family=family, source=str(folder), resolution=32, local_files_only=True, train_mode=train_mode,
                   empty_prompt_zeros=family == "sdxl", lora=dict(rank=4, alpha=4)),
        seed_data=dict(pairs=[str(pairs)], seed_size=8, pairs_per_shard=4, encode_batch_size=4),
        prompts=dict(files=[str(pool)], per_round=[4, 4]),
        generate=dict(n_candidates=3, prompts_per_shard=2, sampler=dict(kind="ddim", steps=3, batch_size=8,
                                                                         guidance_scale=3.0)),
        reward=dict(k_draws=2, batch_size=8),
        seed_train=dict(effective_batch_pairs=4, micro_batch_pairs=2, max_steps=2, learning_rate=1e-4,
                        checkpoint_every=1),
        round_train=dict(effective_batch_pairs=4, micro_batch_pairs=2, max_steps=2, learning_rate=1e-4,
                         checkpoint_every=1),
        eval=dict(prompts=[str(pool)], max_prompts=3, seeds_per_prompt=2, scorers=[],
                  sampler=dict(kind="ddim", steps=3, batch_size=8)),
        rounds=1,
    )
    for key, value in overrides.items():
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return SailConfig.model_validate(data)


def stage_ctx(config: SailConfig, layout: RunLayout, *parts: str, shards: list[int] | None = None) -> StageContext:
    """A stage's context writing into ``<run>/<parts...>`` (tests call stage functions directly)."""
    out = layout.root.joinpath(*parts)
    out.mkdir(parents=True, exist_ok=True)
    return StageContext(config, layout, out, shards=shards)
