"""Shared fixtures. Tests run offline on the CPU: the Hugging Face Hub is never contacted."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# OMP_NUM_THREADS (set by a job scheduler sharing the cores) wins over the default of 2 threads
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory):
    from sail_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd15", tmp_path_factory.mktemp("tiny-sd15"))


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    from sail_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sdxl", tmp_path_factory.mktemp("tiny-sdxl"))
