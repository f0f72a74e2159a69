"""The sail-loop flow on a real (temporary) Prefect server: completion, failure and resume, caching."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flows.sail_loop import sail_loop

from .conftest import TINY_WORLD
from .helpers import flow_logs, flow_runs, task_runs, task_states, tree_bytes

pytestmark = pytest.mark.flows


def _run(runs_dir: Path, name: str, **extra):
    return sail_loop(preset="world", run_name=name, runs_dir=str(runs_dir), overrides={**TINY_WORLD, **extra},
                     return_state=True)


def test_world_flow_completes_and_writes_its_artifacts(golden):
    run = golden.dir
    for path in ("manifest.json", "report/metrics.parquet", "report/metrics.png", "report/metrics.txt",
                 "report/samples.png"):
        assert (run / path).stat().st_size > 0, path
    stages = json.loads((run / "manifest.json").read_text())["stages"]
    assert sorted({s["stage"] for s in stages}) == ["evaluate", "export", "generate", "mix", "prompts", "rank", "seed",
                                                     "train"]
    for entry in stages:  # every recorded stage still has the content it was recorded with
        assert (run / entry["data"]["path"]).is_dir()
    generate = next(s for s in stages if s["stage"] == "generate")
    assert generate["record"]["n_prompts"] == 8 and generate["settings"]["generate"]["n_candidates"] == 4
    states = task_states(golden.flow_run_id)
    assert set(states.values()) == {"Completed"}
    assert {"seed", "train-round-00", "generate-round-01", "rank-round-01", "mix-round-01", "train-round-01",
            "evaluate-base", "evaluate-round-01"} <= set(states)


def test_failed_round_resumes_from_cache_and_matches_an_uninterrupted_run(tmp_path, golden):
    # iteration 0 from the golden run; round 1 is computed until its mix fails
    golden.copy_iteration_0(tmp_path / "a", "run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAIL_FAULT", "mix:round-01")
        failed = _run(tmp_path / "a", "run")
    assert failed.is_failed()
    first = task_states(failed.state_details.flow_run_id)
    assert first["mix-round-01"] == "Failed" and first["rank-round-01"] == "Completed"

    resumed = _run(tmp_path / "a", "run")
    assert resumed.is_completed()
    states = task_states(resumed.state_details.flow_run_id)
    for name in ("seed", "evaluate-base", "train-round-00", "evaluate-round-00",
                 "prompts-round-01", "generate-round-01", "rank-round-01"):
        assert states[name] == "Cached", (name, states[name])
    for name in ("mix-round-01", "train-round-01", "evaluate-round-01"):
        assert states[name] == "Completed", (name, states[name])

    # the uninterrupted run: this session's golden run (a run's files do not hold its name)
    resumed_files, straight_files = tree_bytes(tmp_path / "a" / "run"), tree_bytes(golden.dir)
    assert resumed_files.keys() == straight_files.keys()
    different = [p for p in resumed_files if resumed_files[p] != straight_files[p]]
    assert different == []


def test_changing_one_setting_reruns_only_what_depends_on_it(tmp_path, golden):
    golden.copy(tmp_path, "run")
    changed = _run(tmp_path, "run", **{"mixup.alpha": 0.5})
    states = task_states(changed.state_details.flow_run_id)
    assert states["rank-round-01"] == "Cached" and states["train-round-00"] == "Cached"
    assert states["mix-round-01"] == "Completed" and states["train-round-01"] == "Completed"


def test_a_cached_stage_whose_files_changed_is_recomputed(tmp_path, golden):
    golden.copy(tmp_path, "run")
    rank_dir = next((tmp_path / "run" / "round-01").glob("rank-*/"))
    (rank_dir / "pairs.parquet").unlink()
    again = _run(tmp_path, "run")
    states = task_states(again.state_details.flow_run_id)
    assert states["rank-round-01"] == "Completed"  # its data was gone: not trusted, recomputed
    assert states["generate-round-01"] == "Cached"
    assert (rank_dir / "pairs.parquet").exists()


def test_generation_killed_mid_shard_resumes_without_regenerating_finished_shards(tmp_path, golden):
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    overrides = {**TINY_WORLD, "prompts.per_round": [8], "generate.prompts_per_shard": 2}
    # iteration 0 comes from the golden run (Cached); round 1 starts afresh
    golden.copy_iteration_0(tmp_path, "run")
    # 4 shards of 2 prompts x 4 candidates: die once 12 candidates exist, i.e. inside the second shard
    code = ("from flows.sail_loop import sail_loop; import json, sys; "
            "sail_loop(preset='world', run_name='run', runs_dir=sys.argv[1], overrides=json.loads(sys.argv[2]))")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), json.dumps(overrides)],
                          env={**env, "SAIL_FAULT": "generate:round-01:12"},
                          capture_output=True, text=True, timeout=900, cwd=Path(__file__).parents[2])
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    generate_dir = next((tmp_path / "run" / "round-01").glob("generate-*/"))
    finished = sorted(p.name for p in generate_dir.glob("shard-*.parquet"))
    assert finished == ["shard-00000.parquet"]
    before = (generate_dir / "shard-00000.safetensors").stat()

    state = sail_loop(preset="world", run_name="run", runs_dir=str(tmp_path), overrides=overrides, return_state=True)
    assert state.is_completed()
    record = json.loads(generate_dir.with_suffix(".json").read_text())["record"]
    assert (record["shards_reused"], record["shards_generated"]) == (1, 3)
    after = (generate_dir / "shard-00000.safetensors").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_pure_realalign_and_sail_with_real_anchors_run_through_the_same_flow(tmp_path, golden):
    real = {**TINY_WORLD, "real.max_images": 6, "real.images_per_shard": 4}
    state = sail_loop(preset="world-realalign", run_name="realalign", runs_dir=str(tmp_path), overrides=real,
                      return_state=True)
    assert state.is_completed(), state.message
    states = task_states(state.state_details.flow_run_id)
    assert "seed" not in states and "rank-round-01" not in states  # no human labels, no self-ranking
    assert {"real", "generate-round-01", "mix-round-01", "train-round-01"} <= set(states)
    mix = json.loads(next((tmp_path / "realalign" / "round-01").glob("mix-*.json")).read_text())["record"]
    assert set(mix["counts"]) == {"real-generated", "real-perturbed"}
    assert mix["counts"]["real-generated"] == mix["counts"]["real-perturbed"] == 6

    world_real = "pkg:sail_core.world/data/real.parquet"
    golden.copy(tmp_path, "sail-real")  # iteration 0 and round 1's ranking come back Cached
    mixed = _run(tmp_path, "sail-real", **{"real.sources": [world_real], "real.max_images": 6,
                                          "mixup.alpha": 0.25, "mixup.real_perturbed": 0.25})
    assert mixed.is_completed()
    mix = json.loads(next((tmp_path / "sail-real" / "round-01").glob("mix-*.json")).read_text())["record"]
    # 8 self pairs at 25% make a set of 32: 8 real ≻ perturbed, 16 human
    assert mix["counts"] == {"self": 8, "real-perturbed": 8, "human": 16}


def test_a_missing_input_fails_the_run_before_any_stage_with_one_line_per_problem(tmp_path):
    from sail_core.errors import InputError

    state = _run(tmp_path / "runs", "missing", **{"eval.prompts": [f"text:{tmp_path / 'eval.txt'}"]})
    assert state.is_failed()
    error = state.result(raise_on_failure=False)
    assert isinstance(error, InputError)
    lines = str(error).splitlines()
    assert lines[0] == "the run cannot start (1 problem(s)):"
    assert lines[1].startswith(f"  - eval.prompts (text:{tmp_path / 'eval.txt'}): ") and len(lines) == 2
    assert task_states(state.state_details.flow_run_id) == {}  # nothing ran
    # in the UI: each line once, as a line of its own, no traceback; a short state message; the run's tag
    logs = flow_logs(state.state_details.flow_run_id)
    assert [logs.count(line) for line in lines] == [1, 1] and not any("Traceback" in m for m in logs)
    assert state.message == "the run cannot start (1 problem(s)) (the problems are in the log)"
    parent, _ = flow_runs(state.state_details.flow_run_id)
    assert "run:missing" in parent.tags


def test_bad_input_found_inside_a_stage_is_not_retried(tmp_path):
    from tests.builders import write_pickapic

    # a readable Pick-a-Pic file (the preflight reads schemas only) with a label that is no preference
    labels = [(1.0, 0.0)] * 19 + [(0.7, 0.3)]
    broken = write_pickapic(tmp_path / "pairs.parquet", [f"a picture of thing {i}" for i in range(20)], labels)
    state = _run(tmp_path / "runs", "broken", **{"seed_data.pairs": [str(broken)]})
    assert state.is_failed()
    seed = task_runs(state.state_details.flow_run_id)["seed"]
    assert seed.state.name == "Failed" and seed.run_count == 1  # an InputError is not retried (stages retry twice)
    assert "row 19" in seed.state.message
