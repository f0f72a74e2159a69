"""Shared fixtures. Tests run offline on the CPU: the Hugging Face Hub is never contacted."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# OMP_NUM_THREADS of the environment pytest started in (set by a job scheduler sharing the cores) wins;
# otherwise 2 threads, or 1 in each pytest-xdist worker (the workers share the cores). The workers inherit
# the environment of the pytest process that started them, after this file ran there: what it found is kept
# aside, so that a worker does not take the 2 set for that process (two workers of two threads each on two
# cores run several times slower than two of one). Commands the tests start get the same count.
USER_THREADS = "SAIL_TESTS_OMP_NUM_THREADS"
os.environ.setdefault(USER_THREADS, os.environ.get("OMP_NUM_THREADS", ""))
_shared = bool(os.environ.get("PYTEST_XDIST_WORKER"))
os.environ["OMP_NUM_THREADS"] = (os.environ[USER_THREADS]
                                 or ("1" if _shared else str(max(1, min(2, os.cpu_count() or 1)))))
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory):
    from sail_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sd15", tmp_path_factory.mktemp("tiny-sd15"))


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory):
    from sail_core.models.tiny import build_tiny_pipeline

    return build_tiny_pipeline("sdxl", tmp_path_factory.mktemp("tiny-sdxl"))


CLUSTER_MODULES = ("tests/flows/test_deployment.py", "tests/flows/test_multihost.py",
                   "tests/flows/test_postgres_server.py")
"""The tests of the worker cluster (deployments, workers as hosts, S3): the longest group."""


def _work_group(nodeid: str) -> str:
    """Tests of one group run in one pytest-xdist worker, one after another: the cluster's tests (they share the
    session's Prefect server, its work pool, deployments and workers); the other tests of tests/flows/ (they
    share a server and the golden run, each made once per worker); and each other module's tests (they share
    its module fixtures)."""
    path = nodeid.split("::")[0]
    if path in CLUSTER_MODULES:
        return "tests/flows (cluster)"
    return "tests/flows" if path.startswith("tests/flows/") else path


@pytest.hookimpl(optionalhook=True)  # pytest without pytest-xdist runs the suite serially
def pytest_xdist_make_scheduler(config, log):
    """pytest-xdist's scheduler with :func:`_work_group` as the unit of work (its ``loadgroup`` mode does
    not group under pytest 9)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _work_group(nodeid)

    # groups in collection order (pytest_collection_modifyitems: the longest first), not pytest-xdist's
    # default of the groups with the most tests first, which would start the cluster's few long tests last
    config.option.loadscopereorder = False
    return ByWorkGroup(config, log)


def pytest_collection_modifyitems(config, items):
    """The cluster's tests first, then the other flows: the longest groups start at once while the other
    workers take the rest (pytest-xdist hands out groups in collection order)."""
    first = {"tests/flows (cluster)": 0, "tests/flows": 1}
    items.sort(key=lambda item: first.get(_work_group(item.nodeid), 2))  # stable: each group keeps its order
