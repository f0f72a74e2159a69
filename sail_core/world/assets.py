"""Files the embedded world ships: its pretrained base model, human-labelled pairs and eval prompts."""

from __future__ import annotations

from pathlib import Path

WORLD_DIR = Path(__file__).resolve().parent
BASE_MODEL_DIR = WORLD_DIR / "base_model"
LABELS_FILE = WORLD_DIR / "data" / "labels.parquet"
EVAL_PROMPTS_FILE = WORLD_DIR / "data" / "eval_prompts.txt"
REAL_IMAGES_FILE = WORLD_DIR / "data" / "real.parquet"
"""Real images for RealAlign anchors (``image`` PNG bytes, ``caption``); see ``sail_core.world.real``."""
WORLD = "world"
"""The name that stands for the world's shipped files in a config (``model.source``,
``seed_data.pairs``, ``eval.prompts``, ``real.sources``)."""


def resolve_world_data(pattern: str) -> str:
    return str(LABELS_FILE) if pattern == WORLD else pattern


def resolve_eval_prompts(pattern: str) -> str:
    return str(EVAL_PROMPTS_FILE) if pattern == WORLD else pattern


def resolve_real_images(pattern: str) -> str:
    return str(REAL_IMAGES_FILE) if pattern == WORLD else pattern
