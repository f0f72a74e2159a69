"""The ``sail-shard`` flow: some shards of one round's generation or ranking, on one pool worker's GPU.

Dispatched by ``tasks.shards.dispatch_shards`` when ``runtime.shard_workers > 0``. It runs the same
declared stage as the loop does (``sail_core.stages.STAGES[stage]``) through the same runner, for
the given shards only; the loop's own task then finds every shard done and finishes the stage.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from sail_core.config import SailConfig
from sail_core.io.remote import RunStore
from sail_core.run.layout import RunLayout
from sail_core.run.runner import prepare
from sail_core.stages import STAGES
from tasks.artifact_keys import progress_key
from tasks.progress import StageProgress


@flow(name="sail-shard", flow_run_name="{stage}-{group}-{label}")
def sail_shard(location: str, config: dict[str, Any], stage: str, group: str, inputs: dict[str, Any],
               shards: list[int], label: str = "shards") -> int:
    store = RunStore(location)
    store.pull()
    declared = STAGES[stage]
    prepared = prepare(declared, SailConfig.model_validate(config), RunLayout(store.local),
                       declared.inputs.model_validate(inputs))
    if prepared.key.group != group:
        raise ValueError(f"inputs are for {prepared.key.group}, not {group}")
    run_name = location.rstrip("/").rsplit("/", 1)[-1]
    key = progress_key(run_name, stage, group, label)
    with StageProgress(key, f"{stage} {group} {label} of {run_name}") as progress:
        prepared.execute(progress, shards=shards)
    store.push(prepared.out_dir)
    get_run_logger().info("%s %s: shards %s done", stage, group, shards)
    return len(shards)
