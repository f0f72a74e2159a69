"""The ``sail-shard`` flow: part of one round's generation or ranking, on one pool worker's GPU.

With ``runtime.shard_workers = N > 0`` the loop splits a round's shards into N groups and runs each
group as a ``sail-shard`` flow run on the ``gpu`` work queue, where each worker is pinned to one GPU.
Shards are the same units as in-process generation, so a failed group reruns only its unfinished
shards, and the loop's own generate/rank task then finds every shard done and writes the index.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prefect import flow, get_run_logger
from prefect.deployments import run_deployment

from sail_core.config import SailConfig
from sail_core.io.remote import RunStore
from sail_core.models.lineage import UnetCheckpoint
from sail_core.stages.bookkeeping import stage_dir
from sail_core.stages.generate import generate_candidates
from sail_core.stages.keys import StageKey
from sail_core.stages.rank import rank_candidates
from sail_core.stages.records import CandidatesRecord, PromptsRecord
from tasks.context import RunContext
from tasks.progress import StageProgress

SHARD_DEPLOYMENT = "sail-shard/gpu"


@flow(name="sail-shard", flow_run_name="{stage}-{group}-{label}")
def sail_shard(location: str, config: dict[str, Any], stage: str, group: str, key: dict[str, Any],
               inputs: dict[str, Any], shards: list[int], label: str = "shards") -> int:
    store = RunStore(location)
    store.pull()
    ctx = RunContext(run_dir=str(store.local), config=SailConfig.model_validate(config))
    stage_key = StageKey(key["stage"], key["group"], key["settings"], tuple(key["inputs"]))
    out = stage_dir(ctx.layout, stage_key)
    out.mkdir(parents=True, exist_ok=True)
    prompts = PromptsRecord.model_validate(inputs["prompts"])
    policy = UnetCheckpoint.model_validate(inputs["policy"])
    with StageProgress(f"progress-{stage}-{group}-{label}", f"{stage} {group} {label}") as progress:
        if stage == "generate":
            generate_candidates(ctx.config, ctx.bundle(), ctx.layout, prompts, policy, out, shards, progress)
        elif stage == "rank":
            rank_candidates(ctx.config, ctx.bundle(), ctx.layout, prompts,
                            CandidatesRecord.model_validate(inputs["candidates"]), policy,
                            UnetCheckpoint.model_validate(inputs["judge"]), out, shards, progress)
        else:
            raise ValueError(f"sail-shard runs generate or rank, not {stage!r}")
    store.push(out)
    get_run_logger().info("%s %s: shards %s done", stage, group, shards)
    return len(shards)


def dispatch_shards(location: str, config: SailConfig, key: StageKey, n_shards: int, workers: int,
                    inputs: dict[str, Any]) -> None:
    """Split ``n_shards`` round-robin over ``workers`` sail-shard runs and wait for all of them."""
    groups = [list(range(w, n_shards, workers)) for w in range(min(workers, n_shards))]
    key_data = {"stage": key.stage, "group": key.group, "settings": key.settings, "inputs": list(key.inputs)}

    def launch(index: int) -> Any:
        return run_deployment(SHARD_DEPLOYMENT, timeout=None, as_subflow=True, parameters={
            "location": location, "config": config.model_dump(mode="json"), "stage": key.stage, "group": key.group,
            "key": key_data, "inputs": inputs, "shards": groups[index], "label": f"part-{index}",
        })

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        runs = list(pool.map(launch, range(len(groups))))
    failed = [r.name for r in runs if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"{key.stage} {key.group}: shard runs {failed} did not complete")
