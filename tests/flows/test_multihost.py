"""Two GPU workers as two hosts, a run in S3: a real S3 API (moto's server) on localhost, a real Prefect
server, deployments from prefect.yaml whose pull step clones the code into each worker's own directory,
and each worker with its own cache and credentials (no file system shared between them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sail_core.io.remote import RunStore

from .cluster import ROOT, deployment_run, shard_runs_of, wait
from .conftest import TINY_WORLD
from .helpers import same_artifacts

pytestmark = pytest.mark.flows
RUNS = "s3://sail-runs/runs"
KILLED_PART = "multi-round-01-shard-1"
ITERATION_0 = ("seed", "round-00", "eval-base", "eval-round-00")


def _transfers(root, host: str) -> list[dict]:
    path = root / host / "cache" / "transfers.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _sizes(store: RunStore, *paths: str) -> int:
    return sum(ref.size for p in paths for ref in store.listing(p).values())


def test_a_run_in_s3_shards_over_two_hosts_survives_one_dying_and_matches_a_local_run(
        cluster, golden_files, tmp_path, monkeypatch):
    env, s3, root = cluster.env, cluster.s3, cluster.root
    cluster.start_worker("control")
    for key, value in s3.env("test").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "test-cache"))
    # iteration 0 in the store as a run that finished it left it (the golden run's): round 1 is what runs here
    seeded = golden_files.copy_iteration_0(tmp_path / "seeded", "multi")
    RunStore(f"{RUNS}/multi", local=seeded).push([seeded / group for group in ITERATION_0])
    overrides = json.dumps({**TINY_WORLD, "runtime.shard_workers": 2, "runtime.shard_poll_seconds": 0.5})
    # host b dies (SIGKILL) in its second generation shard: 2 prompts x 4 candidates a shard, killed at 12
    # (the fault is no deployment parameter: it reaches this one flow run, and its shard runs, as a job variable)
    killed_id = deployment_run(env, "sail-loop/world", "run_name=multi", f"runs_dir={RUNS}", f"overrides={overrides}",
                               job_env={"SAIL_FAULT": f"generate:round-01:12@{KILLED_PART}"})
    killed, others = wait(env, killed_id, timeout=1500)
    assert killed.state.is_failed(), killed.state
    crashed = [r for r in shard_runs_of(others, f"{RUNS}/multi") if r.name == KILLED_PART]
    assert crashed and crashed[0].state.is_crashed(), [(r.name, r.state.name) for r in others]

    store = RunStore(f"{RUNS}/multi", local=tmp_path / "view")
    assert not any("/generate-" in r for r in store.records())  # generation never finished
    shards = {rel.rsplit("/", 1)[1]: ref.sha256 for rel, ref in store.listing("round-01").items()
              if "/generate-" in rel}
    # part 0 finished shards 0 and 2, part 1 shard 1 (each published at once); shard 3 died with its host
    assert sorted(shards) == [f"shard-{s:05d}.{ext}" for s in (0, 1, 2) for ext in ("parquet", "safetensors")]

    resumed_id = deployment_run(env, "sail-loop/world", "run_name=multi", f"runs_dir={RUNS}",
                                f"overrides={overrides}")
    resumed, others = wait(env, resumed_id, timeout=1500)
    assert resumed.state.is_completed(), resumed.state.message
    after = {rel.rsplit("/", 1)[1]: ref.sha256 for rel, ref in store.listing("round-01").items()
             if "/generate-" in rel and "/shard-" in rel}
    assert {k: after[k] for k in shards} == shards  # nothing finished was redone
    moved = [t for host in ("host-a", "host-b") for t in _transfers(root, host)]
    part0 = [t for t in moved if t["what"] == "multi-round-01-shard-0"]
    part1 = [t for t in moved if t["what"] == KILLED_PART]
    # part 0 uploaded its 2 shards' tensors and tables and their rewards and pairs tables, then on the
    # rerun found everything done; part 1 (no record of the killed attempt) generated shard 3 alone and
    # ranked shards 1 and 3
    assert sorted(t["files_up"] for t in part0) == [0, 8] and [t["files_up"] for t in part1] == [6]

    # every shard run pulled only its inputs: prompts, conditioning, the policy, its own shards
    prompts_dir = next(r for r in store.records() if "/prompts-" in r).removesuffix(".json")
    policy = next(r for r in store.records() if r.startswith("round-00/train-")).removesuffix(".json")
    inputs = _sizes(store, prompts_dir, f"{policy}/unet")
    everything = _sizes(store, "")
    print(f"\nthe run in S3: {everything} bytes; a shard run's inputs (prompts, conditioning, policy): {inputs} bytes")
    for host in ("host-a", "host-b"):
        for t in _transfers(root, host):
            print(f"{host} {t['what']}: downloaded {t['bytes_down']} bytes in {t['files_down']} files, "
                  f"uploaded {t['bytes_up']} bytes in {t['files_up']} files")
        print(f"{host} at the S3 server: {s3.counts[host]}")
    first = next(t for t in part0 if t["files_up"])
    # exactly its inputs; at this size the policy UNet is about half of the whole run (SDXL: bench/store_traffic.py)
    assert first["bytes_down"] == inputs < everything / 2
    # each worker ran the deployed commit from its own clone (the pull step's), not this checkout
    for host in ("host-a", "host-b"):
        code = re.findall(r" - code: (\S+)", (root / host / f"worker-{host}.log").read_text())
        assert code and all(Path(c).name.startswith("repository") and Path(c) != ROOT for c in code), code

    # the same run on local disk, unsharded (this session's golden run): byte for byte the same artifacts
    # (the lock file of a local run is not an artifact and is never pushed)
    pulled = RunStore(f"{RUNS}/multi", local=tmp_path / "pulled")
    pulled.pull_all()
    assert same_artifacts(pulled.local, golden_files.dir) == []
