"""Spreading sharded stages over the pool's GPU workers: one ``sail-shard`` flow run per worker.

With ``runtime.shard_workers = N > 0`` a round's shards are split round-robin into N groups, each run
as a ``sail-shard`` deployment run on the ``gpu`` work queue, where each worker is pinned to one GPU
(deployments/start-workers.sh), on any host. A shard run executes a list of stages for the same
shards, in order (generation, then ranking of what it generated: one model load, no barrier between
them). Shards are the same units as in-process work, so a failed group reruns only its unfinished
shards. Each step carries the key the flow expects, so a worker running other code (or another
config) fails with that said, instead of writing somewhere the flow will not look.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect.deployments import run_deployment

from sail_core.config import SailConfig
from sail_core.run.runner import stage_key
from sail_core.run.stage import Stage, StageInputs

SHARD_DEPLOYMENT = "sail-shard/gpu"


def shard_groups(n_shards: int, workers: int) -> list[list[int]]:
    return [list(range(w, n_shards, workers)) for w in range(min(workers, n_shards))]


def dispatch_shards(location: str, config: SailConfig, steps: Sequence[tuple[Stage, StageInputs]], workers: int,
                    fault: str | None = None) -> None:
    """Run the steps' shards as ``workers`` sail-shard flow runs and wait for all of them."""
    counts = {stage.shard_count(config, inputs) for stage, inputs in steps if stage.shard_count is not None}
    if len(counts) != 1 or len(steps) != sum(stage.shard_count is not None for stage, _ in steps):
        raise ValueError(f"steps {[s.name for s, _ in steps]} do not share one shard count ({sorted(counts)})")
    groups = shard_groups(counts.pop(), workers)
    name = "-".join(stage.name for stage, _ in steps) + "-" + steps[0][0].group(steps[0][1])
    payload = [{"stage": stage.name, "inputs": inputs.model_dump(mode="json"),
                "key": stage_key(stage, config, inputs).key} for stage, inputs in steps]

    def launch(index: int) -> Any:
        return run_deployment(SHARD_DEPLOYMENT, timeout=None, as_subflow=True,
                              poll_interval=config.runtime.shard_poll_seconds, parameters={
            "location": location, "config": config.model_dump(mode="json"), "steps": payload,
            "shards": groups[index], "label": f"{name}-part-{index}", "fault": fault,
        })

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        runs = list(pool.map(launch, range(len(groups))))
    failed = [r.name for r in runs if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"{name}: shard runs {failed} did not complete; rerun to redo only their unfinished shards")
