"""The run store: content-addressed objects, per-path pointers, a host cache shared safely by workers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from sail_core.io.objects import CorruptObjectError
from sail_core.io.remote import RunStore


@pytest.fixture
def memory_run(tmp_path, monkeypatch, request):
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-a"))
    return f"memory://store-tests/{request.node.name}"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_content_is_uploaded_once_and_pulled_only_where_asked(memory_run, tmp_path, monkeypatch):
    store = RunStore(memory_run, local=tmp_path / "a")
    _write(store.local / "round-01/gen-x/shard-0.bin", b"zero" * 1000)
    _write(store.local / "round-01/gen-x/shard-1.bin", b"one" * 1000)
    _write(store.local / "round-00/train-y/unet.bin", b"zero" * 1000)  # same bytes as shard-0
    assert store.push(["round-01/gen-x", "round-00"]) == 3
    assert (store.stats.files_up, store.stats.bytes_up, store.stats.uploads_skipped) == (2, 7000, 1)
    assert store.push(["round-01/gen-x/shard-1.bin"]) == 1 and store.stats.files_up == 2  # held: not sent again
    assert store.listing("round-01/gen-x")["round-01/gen-x/shard-1.bin"].size == 3000

    # another host (its own cache) pulls one shard: that file and nothing else arrives
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-b"))
    other = RunStore(memory_run, local=tmp_path / "b")
    assert other.pull(["round-01/gen-x/shard-1.bin"]) == 1
    assert sorted(p.relative_to(other.local).as_posix() for p in other.local.rglob("*") if p.is_file()) == [
        "round-01/gen-x/shard-1.bin"]
    assert (other.local / "round-01/gen-x/shard-1.bin").read_bytes() == b"one" * 1000
    assert (other.stats.files_down, other.stats.bytes_down) == (1, 3000)
    assert other.pull(["round-01/gen-x/shard-1.bin"]) == 0  # already there: nothing moves
    # a second worker of host b: the object comes from the host's cache, not the store
    worker = RunStore(memory_run, local=tmp_path / "b2")
    assert worker.pull(["round-01"]) == 2
    assert (worker.stats.files_down, worker.stats.from_host_cache) == (1, 1)
    assert os.path.samefile(worker.local / "round-01/gen-x/shard-1.bin", other.local / "round-01/gen-x/shard-1.bin")
    assert RunStore(str(tmp_path / "plain")).push(["anything"]) == 0  # a local run is its own store


def test_a_damaged_object_is_refused_and_nothing_is_kept(memory_run, tmp_path, monkeypatch):
    store = RunStore(memory_run, local=tmp_path / "a")
    _write(store.local / "ckpt/unet.safetensors", b"weights" * 100)
    store.push(["ckpt"])
    sha = hashlib.sha256(b"weights" * 100).hexdigest()
    store.fs.pipe_file(store._object(sha), b"weights" * 99 + b"WEIGHTS")  # bit rot in the bucket
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-b"))
    other = RunStore(memory_run, local=tmp_path / "b")
    with pytest.raises(CorruptObjectError, match=f"ckpt/unet.safetensors.*expected {sha}"):
        other.pull(["ckpt"])
    assert not (other.local / "ckpt/unet.safetensors").exists()
    assert [p.name for p in other.cache.root.rglob("*") if p.is_file() and not p.name.endswith(".lock")] == []


def test_mirror_makes_the_store_hold_exactly_the_local_directory(memory_run, tmp_path):
    store = RunStore(memory_run, local=tmp_path / "a")
    stage = store.local / "round-00/train-z"
    _write(stage / "steps/step-000002/state.json", b"{}")
    _write(stage / "model.json", b"{}")
    store.push([stage])
    for step in (stage / "steps").iterdir():  # training finished: resume state removed locally
        for f in step.iterdir():
            f.unlink()
        step.rmdir()
    store.mirror(stage)
    assert list(store.listing("round-00/train-z")) == ["round-00/train-z/model.json"]


def _pull_checkpoint(location: str, cache: str, local: str, env: dict[str, str], barrier) -> dict[str, int]:
    os.environ.update(env, SAIL_CACHE_DIR=cache)
    store = RunStore(location, local=local)
    barrier.wait()  # both workers start pulling at the same moment
    store.pull(["round-00/train-a/unet"])
    return store.stats.as_dict()


@pytest.fixture(scope="module")
def s3():
    from tests.s3_server import S3Server

    server = S3Server().start()
    yield server
    server.stop()


def test_two_workers_of_one_host_pulling_one_checkpoint_at_once(s3, tmp_path, monkeypatch):
    for key, value in s3.env("trainer").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "trainer-host"))
    location = "s3://sail-runs/concurrent"
    store = RunStore(location, local=tmp_path / "trainer")
    weights = os.urandom(24 << 20)
    _write(store.local / "round-00/train-a/unet/diffusion_pytorch_model.safetensors", weights)
    _write(store.local / "round-00/train-a/unet/config.json", json.dumps({"layers": 2}).encode())
    store.push(["round-00/train-a/unet"])

    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(2)
    host = str(tmp_path / "gpu-host")  # one host: one cache, two workers with their own working copies
    with context.Pool(2) as pool:
        stats = pool.starmap(_pull_checkpoint, [(location, host, str(tmp_path / f"worker-{i}"), s3.env(f"worker-{i}"),
                                                 barrier) for i in range(2)])
    for i in range(2):
        got = (tmp_path / f"worker-{i}/round-00/train-a/unet/diffusion_pytorch_model.safetensors").read_bytes()
        assert got == weights
    # the host downloaded each file once: one worker fetched it, the other waited and linked it
    assert sum(s["files_down"] for s in stats) == 2 and sum(s["from_host_cache"] for s in stats) == 2
    assert sum(s["bytes_down"] for s in stats) == len(weights) + len(json.dumps({"layers": 2}))
    leftovers = [p for p in Path(host).rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    downloaded = sum(s3.counts[f"worker-{i}"]["bytes_down"] for i in range(2))
    print(f"\nbytes downloaded by the two workers (counted at the S3 server): {downloaded}")
    assert len(weights) <= downloaded < len(weights) + 64 * 1024  # the checkpoint crossed the wire once
