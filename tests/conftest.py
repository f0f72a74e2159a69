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


def _work_group(nodeid: str) -> str:
    """Tests of one group run in one pytest-xdist worker, one after another: all of tests/flows/ (they share
    the session's Prefect server, its work pool and workers, and the golden run, each made once per
    worker), and each other module's tests (they share its module fixtures)."""
    path = nodeid.split("::")[0]
    return "tests/flows" if path.startswith("tests/flows/") else path


@pytest.hookimpl(optionalhook=True)  # pytest without pytest-xdist runs the suite serially
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler with :func:`_work_group` as the unit of work (its ``loadgroup`` mode does
    not group under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_group(nodeid)

    return ByWorkGroup(config, log)


def pytest_collection_modifyitems(config, items):
    """The flows first: their group is the longest, so it starts at once while the other workers take
    the rest (pytest-xdist hands out groups in collection order)."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/flows/"))  # stable: each group keeps its order
