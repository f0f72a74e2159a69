"""The stage protocol: one runner executes any declared stage (key → finished? → run → record)."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from sail_core.algorithm.judge import judge_reference
from sail_core.config import load_config
from sail_core.io.atomic import write_text
from sail_core.io.remote import RunStore
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.run.bookkeeping import sidecar, stage_dir
from sail_core.run.code_identity import code_digest, module_digest
from sail_core.run.keys import fingerprint
from sail_core.run.layout import Artifact, RunLayout
from sail_core.run.lineage import Lineage, ModelRef
from sail_core.run.records import Record
from sail_core.run.runner import prepare, run_stage, stage_key
from sail_core.run.stage import Stage, StageContext, StageInputs
from sail_core.stages import STAGES

CALLS: list[tuple[str, tuple[int, ...] | None]] = []


class EchoInputs(StageInputs):
    word: str
    upstream: Artifact | None = None


class EchoRecord(Record):
    out: Artifact
    length: int


def echo(ctx: StageContext, inputs: EchoInputs) -> EchoRecord | None:
    """Writes the word once per shard; finishes when every shard is there."""
    CALLS.append((inputs.word, None if ctx.shards is None else tuple(ctx.shards)))
    for shard in ctx.wanted_shards(2):
        write_text(ctx.out_dir / f"shard-{shard}.txt", inputs.word * ctx.config.rounds, overwrite=True)
    if not all((ctx.out_dir / f"shard-{s}.txt").exists() for s in range(2)):
        return None
    return EchoRecord(out=Artifact.of(ctx.layout.root, ctx.out_dir), length=len(inputs.word))


ECHO = Stage(name="echo", inputs=EchoInputs, record=EchoRecord, run=echo, group=lambda inputs: "group",
             settings=lambda config, inputs: {"rounds": config.rounds}, shard_count=lambda config, inputs: 2)


@pytest.fixture
def world():
    CALLS.clear()
    return load_config("world")


def test_a_finished_stage_is_reused_and_a_change_reruns_it(world, tmp_path):
    layout = RunLayout(tmp_path)
    first = run_stage(ECHO, world, layout, EchoInputs(word="ab"))
    assert (first.length, CALLS) == (2, [("ab", None)])
    assert run_stage(ECHO, world, layout, EchoInputs(word="ab")) == first and len(CALLS) == 1  # reused
    entry = json.loads(sidecar(layout, stage_key(ECHO, world, EchoInputs(word="ab"))).read_text())
    assert entry["settings"] == {"rounds": 3} and entry["inputs"] == ['word="ab"', "upstream=-"]
    assert entry["code"] == code_digest(["tests.run.test_runner"])
    # a setting, an input value and an upstream artifact's content each make a new execution
    other = run_stage(ECHO, world.model_copy(update={"rounds": 2}), layout, EchoInputs(word="ab"))
    run_stage(ECHO, world, layout, EchoInputs(word="abc"))
    run_stage(ECHO, world, layout, EchoInputs(word="ab", upstream=first.out))
    assert len(CALLS) == 4 and (tmp_path / other.out.path / "shard-0.txt").read_text() == "abab"
    assert len({p.name for p in (tmp_path / "group").glob("echo-*") if p.is_dir()}) == 4


def test_changed_files_are_set_aside_and_recomputed(world, tmp_path):
    layout = RunLayout(tmp_path)
    first = run_stage(ECHO, world, layout, EchoInputs(word="ab"))
    (tmp_path / first.out.path / "shard-1.txt").write_text("tampered")
    prepared = prepare(ECHO, world, layout, EchoInputs(word="ab"))
    assert prepared.finished() is None and prepared.set_aside is not None
    assert (prepared.set_aside / "data" / "shard-1.txt").read_text() == "tampered"  # kept, not deleted
    assert prepared.execute() == first and len(CALLS) == 2


def test_shard_subsets_record_nothing_until_a_full_call_finishes(world, tmp_path):
    layout = RunLayout(tmp_path)
    prepared = prepare(ECHO, world, layout, EchoInputs(word="x"))
    assert prepared.execute(shards=[1]) is None
    assert prepared.finished() is None and not sidecar(layout, prepared.key).exists()
    record = prepared.execute()
    assert record is not None and prepared.finished() == record
    assert CALLS == [("x", (1,)), ("x", None)]


def test_inputs_of_another_stage_are_refused(world, tmp_path):
    with pytest.raises(TypeError, match="takes EchoInputs"):
        stage_key(ECHO, world, STAGES["train"].inputs.model_construct())


def test_fingerprints_take_artifact_hashes_and_model_identities():
    art = Artifact(path="a/b.parquet", sha256="f" * 64)
    model = ModelRef(checkpoint=UnetCheckpoint(kind="full", weights="x/unet"), identity="trained:1234")
    record = EchoRecord(out=art, length=7)
    assert fingerprint(model) == "trained:1234"
    assert fingerprint(record) == "{out=" + "f" * 64 + "}"  # counts follow from the artifacts
    assert fingerprint([record, None, 3]) == "[{out=" + "f" * 64 + "},-,3]"
    # the same content at another path is the same input: runs can move
    assert fingerprint(EchoRecord(out=Artifact(path="elsewhere", sha256="f" * 64), length=7)) == fingerprint(record)


def test_code_identity_ignores_docstrings_and_comments_but_not_code(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    source = '"""Doc."""\n\ndef f(x):\n    """Doc of f."""\n    return x + 1  # one\n'
    variants = {
        "same": '"""Another doc."""\n\n\ndef f(x):\n    # a comment\n    return x + 1\n',
        "changed": '"""Doc."""\n\ndef f(x):\n    """Doc of f."""\n    return x + 2\n',
    }
    (tmp_path / "stage_a.py").write_text(source)
    for name, text in variants.items():
        (tmp_path / f"stage_{name}.py").write_text(textwrap.dedent(text))
    importlib.invalidate_caches()
    assert module_digest("stage_a") == module_digest("stage_same")
    assert module_digest("stage_a") != module_digest("stage_changed")
    assert "stage_a" not in sys.modules  # found and parsed, never imported


def test_every_declared_stage_keys_its_own_code_and_the_algorithm_it_uses():
    assert list(STAGES) == ["seed", "real", "prompts", "generate", "rank", "mix", "train", "evaluate", "export"]
    for name, stage in STAGES.items():
        assert stage.modules[0] == f"sail_core.stages.{name}"
    assert "sail_core.algorithm.reward" in STAGES["rank"].modules
    assert "sail_core.algorithm.dpo_loss" in STAGES["train"].modules
    assert "sail_core.algorithm.mixup" in STAGES["mix"].modules
    assert "sail_core.export.lora_merge" in STAGES["export"].modules


def test_lineage_gives_each_round_its_policy_and_judge():
    models = [ModelRef(checkpoint=UnetCheckpoint(label=f"m{i}"), identity=f"m{i}") for i in range(4)]
    lineage = Lineage.start(models[0])
    for m in models[1:]:
        lineage = lineage.then(m)
    assert lineage.base == models[0] and lineage.latest == models[3]
    assert [lineage.policy(i) for i in (1, 2, 3)] == models[1:]
    for option in ("base", "iter0", "previous"):
        for i in (1, 2, 3):
            assert lineage.judge(option, i) == judge_reference(option, i, models)
    assert lineage.judge("iter0", 1) == models[0] and lineage.judge("iter0", 3) == models[1]
    assert lineage.judge("previous", 3) == models[2]
    with pytest.raises(ValueError, match="round 4"):
        lineage.policy(4)


def test_stage_directories_are_named_by_group_stage_and_key(world, tmp_path):
    layout = RunLayout(tmp_path)
    key = stage_key(ECHO, world, EchoInputs(word="ab"))
    assert stage_dir(layout, key) == tmp_path / "group" / f"echo-{key.key[:8]}"


def test_a_run_in_a_store_is_finished_there_and_reused_elsewhere_without_its_data(world, tmp_path, monkeypatch):
    location = "memory://runner-tests/remote"
    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-a"))
    a = RunStore(location, local=tmp_path / "a")
    record = prepare(ECHO, world, RunLayout(a.local), EchoInputs(word="ab"), a).execute()
    held = set(a.listing())
    assert {f"{record.out.path}/shard-0.txt", f"{record.out.path}/shard-1.txt", f"{record.out.path}.json"} == held

    monkeypatch.setenv("SAIL_CACHE_DIR", str(tmp_path / "host-b"))  # another host, nothing local
    b = RunStore(location, local=tmp_path / "b")
    assert prepare(ECHO, world, RunLayout(b.local), EchoInputs(word="ab"), b).finished() == record
    assert b.stats.files_down == 1 and not (b.local / record.out.path).exists()  # its record, not its data
    # a stage downstream pulls exactly the upstream artifact it reads
    prepare(ECHO, world, RunLayout(b.local), EchoInputs(word="c", upstream=record.out), b).execute()
    assert (b.local / record.out.path / "shard-1.txt").read_text() == "ababab"

    # the store's copy is changed behind the run's back: set aside there, recomputed, same result
    a.fs.pipe_file(a._pointer(f"{record.out.path}/shard-1.txt"), json.dumps({"sha256": "0" * 64, "size": 1}).encode())
    prepared = prepare(ECHO, world, RunLayout(b.local), EchoInputs(word="ab"), b)
    assert prepared.finished() is None and prepared.set_aside.startswith(f"{location}/.changed/")
    assert f"{record.out.path}/shard-0.txt" not in b.listing()
    assert prepared.execute() == record
    assert prepare(ECHO, world, RunLayout(b.local), EchoInputs(word="ab"), b).finished() == record
