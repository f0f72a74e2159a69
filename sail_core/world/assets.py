"""Files the embedded world ships: its pretrained base model, human-labelled pairs, eval prompts and
real images. Configs name them as ``pkg:sail_core.world/<path>`` (see ``sail_core.io.paths``); these
constants are for the world's own builders (``sail world pretrain|labels|real-images``)."""

from __future__ import annotations

from pathlib import Path

WORLD_DIR = Path(__file__).resolve().parent
BASE_MODEL_DIR = WORLD_DIR / "base_model"
LABELS_FILE = WORLD_DIR / "data" / "labels.parquet"
EVAL_PROMPTS_FILE = WORLD_DIR / "data" / "eval_prompts.txt"
"""Held-out test prompts (``splits``): they report results and are never tuned on."""
TUNE_PROMPTS_FILE = WORLD_DIR / "data" / "tune_prompts.txt"
"""Held-out tuning prompts (``splits``): hyperparameters are chosen on these, results never reported."""
REAL_IMAGES_FILE = WORLD_DIR / "data" / "real.parquet"
"""Real images for RealAlign anchors (``image`` PNG bytes, ``caption``); see ``sail_core.world.real``."""
