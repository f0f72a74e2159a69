"""The ``sail-shard`` flow: some shards of a round's generation and ranking, on one pool worker's GPU.

Dispatched by ``tasks.shards.dispatch_shards`` when ``runtime.shard_workers > 0``. It runs the same
declared stages as the loop does (``sail_core.stages.STAGES[name]``) through the same runner, for the
given shards only and in the given order (generate, then rank what was generated, with the policy
loaded once); the loop's own tasks then find every shard done and finish the stages. On a remote
run each shard run works in a fresh working copy of its own and pulls only what its shards read
(prompts, conditioning, the checkpoints, its shards' candidates); files reach it through the host's
shared object cache, so a checkpoint is downloaded once per host.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

import sail_core
from sail_core.config import SailConfig
from sail_core.errors import InputError
from sail_core.io.objects import cache_root
from sail_core.io.remote import RunStore, is_url
from sail_core.models.denoisers import keep_inference_models
from sail_core.run.layout import RunLayout
from sail_core.run.runner import prepare
from sail_core.stages import STAGES
from tasks.artifact_keys import progress_key
from tasks.faults import kill_after
from tasks.library_logs import forward_library_logs
from tasks.progress import StageProgress
from tasks.run import enter_deployment_workdir
from tasks.transfers import log_transfers


@flow(name="sail-shard", flow_run_name="{label}")
def sail_shard(location: str, config: dict[str, Any], steps: list[dict[str, Any]], shards: list[int],
               label: str = "shards") -> dict[str, int]:
    """``steps``: ``{"stage", "inputs", "key"}`` each, executed in order for ``shards``. Returns what this
    run moved to and from the run store (bytes and files)."""
    forward_library_logs()
    enter_deployment_workdir()  # a relative model or data path means what it means to the loop
    sail_config = SailConfig.model_validate(config)
    workspace = None
    if is_url(location):
        (cache_root() / "work").mkdir(parents=True, exist_ok=True)
        workspace = tempfile.mkdtemp(prefix=f"{label}-", dir=cache_root() / "work")
    store = RunStore(location, local=workspace)
    run_name = location.rstrip("/").rsplit("/", 1)[-1]
    get_run_logger().info("code: %s", Path(sail_core.__file__).resolve().parents[1])
    try:
        with keep_inference_models():
            for step in steps:
                declared = STAGES[step["stage"]]
                prepared = prepare(declared, sail_config, RunLayout(store.local),
                                   declared.inputs.model_validate(step["inputs"]), store)
                if prepared.key.key != step["key"]:
                    raise InputError(f"this worker computes key {prepared.key.key} for {declared.name} "
                                     f"{prepared.key.group}, the flow expects {step['key']}: it runs other code or "
                                     "another config; deploy the flow's commit to every worker", parameter="steps")
                group = prepared.key.group
                part = label.removeprefix(f"{run_name}-{group}-")  # shard-K: the run and round are in the key
                with StageProgress(progress_key(run_name, declared.name, group, part),
                                   f"{declared.name} {group} {part} of {run_name}",
                                   kill_after(declared.name, group, label)) as progress:
                    prepared.execute(progress, shards=shards)
                get_run_logger().info("%s %s: shards %s done", declared.name, group, shards)
    finally:
        moved = log_transfers(store, label) if store.remote else {}
        if workspace is not None:
            shutil.rmtree(workspace, ignore_errors=True)
    return moved
