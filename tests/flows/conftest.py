"""Flow tests run against a real Prefect API: one temporary SQLite server for the whole session
(its start-up migrates a fresh database, 15-20 s on two cores), scoped to this folder only."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW", "ignore")


@pytest.fixture(scope="session", autouse=True)
def prefect_api(tmp_path_factory):
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_HOME: str(tmp_path_factory.mktemp("prefect-home"))}):
        with prefect_test_harness(server_startup_timeout=180):
            yield


TINY_WORLD = {
    "rounds": 1,
    "prompts.per_round": [8],
    "generate.n_candidates": 4,
    "generate.prompts_per_shard": 2,
    "generate.sampler.steps": 4,
    "reward.k_draws": 2,
    "seed_data.seed_size": 16,
    "seed_train.max_steps": 2,
    "seed_train.effective_batch_pairs": 8,
    "seed_train.micro_batch_pairs": 8,
    "round_train.max_steps": 2,
    "round_train.effective_batch_pairs": 8,
    "round_train.micro_batch_pairs": 8,
    "eval.max_prompts": 4,
    "eval.seeds_per_prompt": 1,
    "eval.sampler.steps": 4,
    "eval.grid_prompts": 2,
}
"""The embedded world at a size that runs in seconds: every stage, real files, real Prefect."""
