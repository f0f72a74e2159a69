"""``sail verify RUN [--repair]``: one line per damaged record, object or step checkpoint, exit code 1
when anything is damaged; after ``--repair`` a second ``sail verify`` exits 0 and the next run
recomputes what was set aside, to the same result."""

from __future__ import annotations

import pytest
import torch

import sail_core.io.objects as objects
from sail_cli.main import main
from sail_core.config import load_config
from sail_core.io.remote import RunStore
from sail_core.run.layout import RunLayout
from sail_core.run.runner import prepare, run_stage
from sail_core.training.step_checkpoints import TrainingState, save_checkpoint
from tests.run.test_runner import ECHO, EchoInputs


@pytest.fixture
def world():
    return load_config("world")


def _verify(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(["verify", *argv])
    out = capsys.readouterr()
    assert out.err == ""
    return code, out.out.strip().splitlines()


def _checkpoint(steps_dir, step: int) -> None:
    module = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(module.parameters())
    module(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(steps_dir, module, optimizer, TrainingState(step, {}, []), keep=2)


def test_a_damaged_local_run_is_reported_repaired_and_then_intact(tmp_path, capsys, world):
    layout = RunLayout(tmp_path / "run")
    first = run_stage(ECHO, world, layout, EchoInputs(word="ab"))
    run_stage(ECHO, world, layout, EchoInputs(word="cd"))
    steps = layout.root / "round-01" / "train-0123abcd" / "steps"
    _checkpoint(steps, 2)
    _checkpoint(steps, 4)
    assert _verify(capsys, str(layout.root)) == (0, ["intact: 2 stage records, 4 files, 2 step checkpoints"])

    (layout.root / first.out.path / "shard-1.txt").write_text("tampered")
    trainable = steps / "step-000004" / "trainable.safetensors"
    data = trainable.read_bytes()
    trainable.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    code, lines = _verify(capsys, str(layout.root))
    assert code == 1 and lines == [
        f"{layout.root / first.out.path}: its files do not have the hash recorded when the stage finished",
        f"{steps / 'step-000004'}: damaged step checkpoint: {trainable} does not have its recorded SHA-256 "
        "(damaged or changed after it was saved)",
        "2 problem(s), 0 repaired: 2 stage records, 4 files, 2 step checkpoints"]
    code, lines = _verify(capsys, str(layout.root), "--repair")
    assert code == 1 and len(lines) == 3 and all("; repaired: set aside in " in line for line in lines[:2]), lines
    assert _verify(capsys, str(layout.root)) == (0, ["intact: 1 stage records, 2 files, 1 step checkpoints"])
    assert run_stage(ECHO, world, layout, EchoInputs(word="ab")) == first  # the next run recomputes it


def test_a_damaged_store_run_is_repaired_from_a_good_copy_or_set_aside(tmp_path, capsys, monkeypatch, world):
    location = "memory://verify-tests/run"
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-a"))
    a = RunStore(location, local=tmp_path / "a")
    first = prepare(ECHO, world, RunLayout(a.local), EchoInputs(word="ab"), a).execute()
    second = prepare(ECHO, world, RunLayout(a.local), EchoInputs(word="cd"), a).execute()
    assert _verify(capsys, location)[0] == 0
    refs = a.listing()
    flipped, deleted = f"{first.out.path}/shard-0.txt", f"{second.out.path}/shard-1.txt"
    a.fs.pipe_file(a._object(refs[flipped].sha256), b"ABABAB")
    a.fs.rm(a._object(refs[deleted].sha256))

    # a host without a copy: reported, then --repair sets the stages aside; the run is then intact
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-b"))
    monkeypatch.setattr(objects, "_VERIFIED", {})
    code, lines = _verify(capsys, location)
    # a stage's two shards hold the same bytes (one object): each file is reported
    assert code == 1 and sorted(lines[:4]) == sorted(
        [f"{location}/{first.out.path}/shard-{i}.txt: its object {a.object_url(refs[flipped].sha256)} is damaged: "
         "its bytes do not hash to its name" for i in range(2)]
        + [f"{location}/{second.out.path}/shard-{i}.txt: its object {a.object_url(refs[deleted].sha256)} is missing"
           for i in range(2)]), lines
    assert lines[4:] == ["4 problem(s), 0 repaired: 2 stage records, 6 files, 0 step checkpoints"]
    code, lines = _verify(capsys, location, "--repair")
    assert code == 1 and all(line.endswith("repaired: its stage was set aside; the next run recomputes it")
                             for line in lines[:4]), lines
    assert _verify(capsys, location) == (0, ["intact: 0 stage records, 0 files, 0 step checkpoints"])

    # the next run recomputes both stages, to the same records; the host that wrote them repairs in place
    b = RunStore(location, local=tmp_path / "b")
    assert prepare(ECHO, world, RunLayout(b.local), EchoInputs(word="ab"), b).execute() == first
    assert prepare(ECHO, world, RunLayout(b.local), EchoInputs(word="cd"), b).execute() == second
    a.fs.rm(a._object(refs[flipped].sha256))
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-a"))
    code, lines = _verify(capsys, location, "--repair")
    assert code == 1 and lines[0].endswith("repaired: replaced from a good copy on this host"), lines
    assert _verify(capsys, location)[0] == 0


def test_a_damaged_record_is_not_read_by_a_run_or_by_verify(tmp_path, capsys, world):
    layout = RunLayout(tmp_path / "run")
    first = run_stage(ECHO, world, layout, EchoInputs(word="ab"))
    record = layout.root / f"{first.out.path}.json"
    record.write_bytes(record.read_bytes()[: record.stat().st_size // 2])  # a copy cut short
    code, lines = _verify(capsys, str(layout.root))
    assert code == 1 and lines[0] == f"{record}: the record is damaged (not a readable stage record)"
    prepared = prepare(ECHO, world, layout, EchoInputs(word="ab"))
    assert prepared.finished() is None and prepared.set_aside is not None  # set aside, not a crash
    assert prepared.execute() == first and _verify(capsys, str(layout.root))[0] == 0
