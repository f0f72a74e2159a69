"""Spreading a sharded stage over the pool's GPU workers: one ``sail-shard`` flow run per worker.

With ``runtime.shard_workers = N > 0`` a round's generation and ranking shards are split round-robin
into N groups, each run as a ``sail-shard`` deployment run on the ``gpu`` work queue, where each
worker is pinned to one GPU (deployments/start-workers.sh). Shards are the same units as in-process
work, so a failed group reruns only its unfinished shards.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect.deployments import run_deployment

from sail_core.config import SailConfig
from sail_core.run.stage import Stage, StageInputs

SHARD_DEPLOYMENT = "sail-shard/gpu"


def dispatch_shards(location: str, config: SailConfig, stage: Stage, inputs: StageInputs, workers: int) -> None:
    """Run ``stage``'s shards as ``workers`` sail-shard flow runs and wait for all of them."""
    assert stage.shard_count is not None
    n_shards = stage.shard_count(config, inputs)
    groups = [list(range(w, n_shards, workers)) for w in range(min(workers, n_shards))]
    group = stage.group(inputs)

    def launch(index: int) -> Any:
        return run_deployment(SHARD_DEPLOYMENT, timeout=None, as_subflow=True, parameters={
            "location": location, "config": config.model_dump(mode="json"), "stage": stage.name, "group": group,
            "inputs": inputs.model_dump(mode="json"), "shards": groups[index], "label": f"part-{index}",
        })

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        runs = list(pool.map(launch, range(len(groups))))
    failed = [r.name for r in runs if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"{stage.name} {group}: shard runs {failed} did not complete")
