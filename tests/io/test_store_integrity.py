"""Objects of a run store and of a host's cache are verified wherever they come from: a flipped, truncated
or deleted object is detected, replaced from a good copy where one exists, and otherwise its stage is
recomputed; the results equal the clean run's."""

from __future__ import annotations

import hashlib
import os

import pytest

import sail_core.io.objects as objects
from sail_core.config import load_config
from sail_core.io.objects import CorruptObjectError
from sail_core.io.remote import FileRef, MissingObjectError, RunStore
from sail_core.run.layout import RunLayout
from sail_core.run.runner import prepare
from tests.run.test_runner import ECHO, EchoInputs


def _host(monkeypatch, tmp_path, name: str, location: str) -> RunStore:
    """A host: its own cache and working copy (and a fresh process: nothing verified in memory yet)."""
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / f"host-{name}"))
    monkeypatch.setattr(objects, "_VERIFIED", {})
    return RunStore(location, local=tmp_path / f"work-{name}")


def _damage_in_place(path, how: str) -> None:
    os.chmod(path, 0o644)  # objects are read-only; something that ignores the mode
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]) if how == "flip" else data[: len(data) // 2])


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_a_cached_object_damaged_in_place_is_dropped_and_fetched_again(tmp_path, monkeypatch, how):
    location = f"memory://integrity/cache-{how}"
    a = _host(monkeypatch, tmp_path, "a", location)
    (a.local / "g").mkdir(parents=True)
    (a.local / "g/w.bin").write_bytes(b"weights" * 1000)
    a.push(["g"])
    b = _host(monkeypatch, tmp_path, "b", location)
    b.pull(["g"])
    sha = hashlib.sha256(b"weights" * 1000).hexdigest()
    _damage_in_place(b.cache.path(sha), how)  # the working copy is a hard link: damaged too
    monkeypatch.setattr(objects, "_VERIFIED", {})  # the next process of the host
    worker = RunStore(location, local=tmp_path / "work-b2")
    worker.pull(["g"])
    assert (worker.local / "g/w.bin").read_bytes() == b"weights" * 1000
    assert worker.stats.files_down == 1  # not taken from the damaged cache: downloaded again
    assert b.pull(["g"]) == 1 and (b.local / "g/w.bin").read_bytes() == b"weights" * 1000


@pytest.fixture
def world():
    return load_config("world")


def _written(monkeypatch, tmp_path, location: str, world, shard_index: int):
    """Host a's finished echo stage of "ab" in the store: (host a, its record, one shard's path, its object)."""
    a = _host(monkeypatch, tmp_path, "a", location)
    record = prepare(ECHO, world, RunLayout(a.local), EchoInputs(word="ab"), a).execute()
    shard = f"{record.out.path}/shard-{shard_index}.txt"
    return a, record, shard, a.listing(shard)[shard]


def _finished(store: RunStore, inputs: EchoInputs, world):
    prepared = prepare(ECHO, world, RunLayout(store.local), inputs, store)
    return prepared.finished(), prepared


def test_a_flipped_object_is_taken_out_and_repaired_by_the_host_holding_a_good_copy(tmp_path, monkeypatch, world):
    location = "memory://integrity/flip"
    a, record, shard, ref = _written(monkeypatch, tmp_path, location, world, 1)
    a.fs.pipe_file(a._object(ref.sha256), b"bit rot")  # the bucket's copy changes

    c = _host(monkeypatch, tmp_path, "c", location)  # a fresh host needs the file: refused, naming it
    downstream = EchoInputs(word="c", upstream=record.out)
    # (both shards hold the same bytes, so one object: whichever is pulled first is the one named)
    with pytest.raises(CorruptObjectError, match=f"{location}/{record.out.path}/shard-[01].txt: .*is damaged in the "
                                                 "store"):
        prepare(ECHO, world, RunLayout(c.local), downstream, c).execute()
    assert a.stored_problem(ref) == "missing"  # taken out: no other host downloads it

    a = _host(monkeypatch, tmp_path, "a", location)  # the writing host reruns: its verified cache repairs it
    assert _finished(a, EchoInputs(word="ab"), world)[0] == record and a.stats.objects_repaired == 1
    assert a.stored_problem(ref, content=True) is None
    c = _host(monkeypatch, tmp_path, "c", location)
    assert prepare(ECHO, world, RunLayout(c.local), downstream, c).execute().length == 1
    assert (c.local / shard).read_text() == "ababab"


def test_a_lost_object_without_a_good_copy_recomputes_its_stage(tmp_path, monkeypatch, world):
    location = "memory://integrity/lost"
    a, record, shard, ref = _written(monkeypatch, tmp_path, location, world, 0)
    a.fs.rm(a._object(ref.sha256))

    d = _host(monkeypatch, tmp_path, "d", location)  # no host here holds it
    with pytest.raises(MissingObjectError, match=f"{location}/{shard}: its object .* is missing in the store"):
        d.pull([shard])
    found, prepared = _finished(d, EchoInputs(word="ab"), world)
    assert found is None and prepared.set_aside.startswith(f"{location}/.changed/")
    assert prepared.execute() == record  # recomputed: the same bytes, the same record
    assert d.stored_problem(ref, content=True) is None
    assert _finished(_host(monkeypatch, tmp_path, "e", location), EchoInputs(word="ab"), world)[0] == record


def test_a_push_uploads_again_an_object_whose_stored_copy_is_truncated(tmp_path, monkeypatch):
    location = "memory://integrity/push"
    a = _host(monkeypatch, tmp_path, "a", location)
    (a.local / "g").mkdir(parents=True)
    (a.local / "g/w.bin").write_bytes(b"w" * 4000)
    a.push(["g"])
    ref = a.listing("g/w.bin")["g/w.bin"]
    a.fs.pipe_file(a._object(ref.sha256), b"w" * 10)
    assert a.stored_problem(ref) == "10 bytes instead of 4000"
    a.push(["g"])
    assert a.stats.files_up == 2 and a.stored_problem(ref, content=True) is None
    assert a.stored_problem(FileRef("0" * 64, 1)) == "missing"


def test_flipped_truncated_and_deleted_objects_in_s3(tmp_path, monkeypatch, world):
    from tests.s3_server import S3Server

    server = S3Server().start()
    try:
        for key, value in server.env("hosts").items():
            monkeypatch.setenv(key, value)
        location = "s3://sail-runs/integrity"
        a = _host(monkeypatch, tmp_path, "a", location)
        words = ("ab", "xy", "pq")  # one stage per damage (a stage's two shards hold the same bytes)
        records = [prepare(ECHO, world, RunLayout(a.local), EchoInputs(word=w), a).execute() for w in words]
        refs = {rel: ref for r in records for rel, ref in a.listing(r.out.path).items()}
        flipped, truncated, deleted = (f"{r.out.path}/shard-0.txt" for r in records)
        a.fs.pipe_file(a._object(refs[flipped].sha256), b"ab" * 2 + b"AB")
        a.fs.pipe_file(a._object(refs[truncated].sha256), b"x")
        a.fs.rm(a._object(refs[deleted].sha256))

        b = _host(monkeypatch, tmp_path, "b", location)  # a fresh host: the flipped object is found on use
        with pytest.raises(CorruptObjectError, match=flipped):
            b.pull([flipped])
        # presence and size are checked without a download: no good copy here, so each stage recomputes
        for word, record in zip(words, records):
            assert _finished(b, EchoInputs(word=word), world)[0] is None
            assert prepare(ECHO, world, RunLayout(b.local), EchoInputs(word=word), b).execute() == record
        c = _host(monkeypatch, tmp_path, "c", location)
        c.pull([r.out.path for r in records])
        for rel, ref in refs.items():
            assert hashlib.sha256((c.local / rel).read_bytes()).hexdigest() == ref.sha256, rel
    finally:
        server.stop()


def test_partial_work_that_lost_an_object_is_dropped_and_the_stage_starts_afresh(tmp_path, monkeypatch, world):
    location = "memory://integrity/partial"
    a = _host(monkeypatch, tmp_path, "a", location)
    prepared = prepare(ECHO, world, RunLayout(a.local), EchoInputs(word="ab"), a)
    prepared.execute(shards=[0])  # an interrupted stage: one shard done, made durable in the store
    a.push([prepared.out_dir])
    part = f"{a.rel(prepared.out_dir)}/shard-0.txt"
    a.fs.rm(a._object(a.listing(part)[part].sha256))

    b = _host(monkeypatch, tmp_path, "b", location)  # another host finishes it: not stuck on the lost part
    record = prepare(ECHO, world, RunLayout(b.local), EchoInputs(word="ab"), b).execute()
    assert (b.local / part).read_text() == "ababab" and b.stored_problem(b.listing(part)[part]) is None
    assert record == prepare(ECHO, world, RunLayout(tmp_path / "local"), EchoInputs(word="ab")).execute()
