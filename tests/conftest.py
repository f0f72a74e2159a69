"""Shared fixtures. Tests run offline on the CPU: the Hugging Face Hub is never contacted."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# OMP_NUM_THREADS (set by a job scheduler sharing the cores) wins; otherwise 2 threads, or 1 in each
# pytest-xdist worker (the workers share the cores). Commands the tests start get the same count.
if not os.environ.get("OMP_NUM_THREADS"):
    shared = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    os.environ["OMP_NUM_THREADS"] = "1" if shared else str(max(1, min(2, os.cpu_count() or 1)))
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory):
    from sail_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd15", tmp_path_factory.mktemp("tiny-sd15"))


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    from sail_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sdxl", tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(config, items):
    """Which tests share a pytest-xdist worker: every test of tests/flows/ one (they share the session's
    Prefect server, its work pool and workers, and the golden run, each made once per worker); each other
    module's tests one (they share its module fixtures)."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            path = item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group("flows" if path.startswith("tests/flows/") else path))
