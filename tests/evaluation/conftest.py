"""The scorer tests run tiny models, for which intra-op threads only add synchronisation: with two
threads on a busy 2-core machine each small op can wait milliseconds for the second thread. One
thread keeps this folder fast; the previous setting is restored afterwards."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
