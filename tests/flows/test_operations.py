"""Operating runs as a user does, against a real Prefect server: what the UI shows of a run, a run directory
that moves, a cache that knows the code, a lock left by a killed process, bit-reproducible runs, errors on
the terminal, and nothing of a run pickled."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from flows.sail_loop import sail_loop
from tests.builders import write_pickapic
from tests.cli.in_process import sail

from .conftest import TINY_WORLD
from .helpers import artifacts, flow_logs, flow_runs, task_runs, task_states, tree_bytes

pytestmark = pytest.mark.flows
ROOT = Path(__file__).resolve().parents[2]
UPSTREAM_OF_MIX = ("seed", "evaluate-base", "train-round-00", "evaluate-round-00", "prompts-round-01",
                   "generate-round-01", "rank-round-01")
FROM_MIX_ON = ("mix-round-01", "train-round-01", "evaluate-round-01", "export")


def _env(**extra: str) -> dict[str, str]:
    """The environment of a ``sail`` command run against the tests' Prefect server (and home), with this
    process's threads."""
    from prefect.settings import PREFECT_API_URL, get_current_settings

    return {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(),
            "PREFECT_HOME": str(get_current_settings().home), "OMP_NUM_THREADS": str(torch.get_num_threads()),
            **extra}


def _run_args(runs_dir: Path, name: str, overrides: dict) -> list[str]:
    """``sail run``'s arguments for a run of ``name`` under ``runs_dir`` with ``overrides`` as ``--set``s."""
    sets = [part for key, value in overrides.items() for part in ("--set", f"{key}={json.dumps(value)}")]
    return ["run", "--runs-dir", str(runs_dir), "--run-name", name, *sets]


def _sail_run(runs_dir: Path, name: str, overrides: dict = TINY_WORLD, cwd: Path = ROOT,
              env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sail_cli.main", *_run_args(runs_dir, name, overrides)], cwd=cwd,
                          env=env or _env(), capture_output=True, text=True, timeout=900)


def _sail_run_here(runs_dir: Path, name: str, overrides: dict) -> subprocess.CompletedProcess:
    """``sail run`` in this process (an error test needs no new interpreter), against the tests' server."""
    from prefect.settings import PREFECT_API_URL

    return sail(*_run_args(runs_dir, name, overrides), env={"PREFECT_API_URL": PREFECT_API_URL.value()})


async def _runs_named(name: str):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    async with get_client() as client:
        return await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))


def _flow_run_named(name: str):
    """The one flow run a ``sail run --run-name <name>`` made (flow runs are named after the run)."""
    runs = [r for r in asyncio.run(_runs_named(name)) if r.parent_task_run_id is None]
    assert len(runs) == 1, [r.name for r in runs]
    return runs[0]


def test_a_lock_left_by_a_killed_process_is_taken_over(golden):
    assert any(f"took over the lock of pid {golden.dead_lock_holder} on host" in m
               for m in flow_logs(golden.flow_run_id))
    assert (golden.dir / ".lock").read_text() == ""  # released when the flow ended


def test_flow_runs_are_named_after_the_run_and_rounds_carry_its_tags(golden):
    parent, children = flow_runs(golden.flow_run_id)
    assert parent.name == "golden" and {"sail", "run:golden"} <= set(parent.tags)
    assert [c.name for c in children] == ["golden-round-01"]
    assert all(set(parent.tags) <= set(c.tags) for c in children)
    # the stage task runs carry none: Prefect would ask its API for a concurrency slot per tag as each starts
    stages = task_runs(golden.flow_run_id)
    assert "train-round-01" in stages and {name: run.tags for name, run in stages.items() if run.tags} == {}


def test_one_live_metrics_table_per_run_headline_first_and_rounded(golden):
    """Published after the base, after iteration 0 and after round 1 into one artifact (one card on the run's
    page, updated in place): model, the headline metric, its CI and its win rate first; every number rounded."""
    versions = artifacts("sail-metrics-golden")
    assert len(versions) == 1 and versions[0].flow_run_id == golden.flow_run_id
    table = json.loads(versions[0].data) if isinstance(versions[0].data, str) else versions[0].data
    assert [row["model"] for row in table] == ["base", "round-00", "round-01"]
    columns = list(table[0])
    assert columns[:4] == ["model", "utility", "utility_ci95", "utility_win_rate"]
    assert all(list(row) == columns for row in table)  # the UI takes its columns from the first row
    assert table[0]["utility_win_rate"] is None and 0 <= table[2]["utility_win_rate"] <= 1
    numbers = [v for row in table for v in row.values() if isinstance(v, float)]
    assert numbers and all(round(v, 4) == v for v in numbers)
    summary = json.loads(next((golden.dir / "eval-round-01").glob("evaluate-*/summary.json")).read_text())
    assert table[2]["utility"] == round(summary["metrics"]["utility"], 4)
    reports = artifacts("sail-report-golden")
    assert len(reports) == 1 and "round-01" in reports[0].data


def test_progress_artifacts_are_keyed_per_run_and_each_ends_at_100(golden):
    progress = {a.key: a.data for a in artifacts("progress-golden-")}
    assert set(progress) == {f"progress-golden-{name}" for name in (*UPSTREAM_OF_MIX, *FROM_MIX_ON)}
    assert all(value == 100.0 for value in progress.values()), progress
    # the run's own bar, on its page: every planned stage done
    run_bar = [a for a in artifacts("progress-golden") if a.key == "progress-golden"]
    assert len(run_bar) == 1 and run_bar[0].data == 100.0 and run_bar[0].flow_run_id == golden.flow_run_id
    assert run_bar[0].description == "run golden: export done, stage 11 of 11"


def test_round_sample_grids_are_artifacts_of_the_parent_run(golden):
    samples = {a.key: a for a in artifacts("sail-samples-golden-")}
    assert sorted(samples) == ["sail-samples-golden-base", "sail-samples-golden-round-00",
                               "sail-samples-golden-round-01", "sail-samples-golden-side-by-side"]
    assert {a.flow_run_id for a in samples.values()} == {golden.flow_run_id}
    assert all("data:image/png;base64," in a.data for a in samples.values())
    # each grid with its prompts, one per row (TINY_WORLD: 2 grid prompts), the same ones for every model
    images = pq.read_table(next((golden.dir / "eval-base").glob("evaluate-*/images.parquet")))
    prompts = list(dict.fromkeys(images.column("prompt").to_pylist()))
    assert len(prompts) == 2
    listed = [f"{i + 1}. {p}" for i, p in enumerate(prompts)]
    for artifact in samples.values():
        assert artifact.data.endswith("\n".join(listed)), artifact.key
    assert "Columns: base, round-00, round-01" in samples["sail-samples-golden-side-by-side"].data


def test_nothing_in_a_run_directory_holds_an_absolute_path(golden):
    runs = golden.runs
    needles = {str(runs), str(ROOT), str(Path(sys.prefix)), str(Path(sys.prefix).resolve())}
    holding = {p.relative_to(runs).as_posix(): [n for n in needles if n.encode() in p.read_bytes()]
               for p in golden.dir.rglob("*") if p.is_file()}
    assert {path: found for path, found in holding.items() if found} == {}
    for name in ("manifest.json", "report/models.json", "report/config.json"):
        assert (golden.dir / name).stat().st_size > 0


def test_a_copied_run_directory_resumes_with_every_stage_cached(golden, tmp_path):
    """A copy elsewhere, under another name, minus its report: every stage comes back Cached without a
    file of it rewritten, and the report it writes anew equals the original's byte for byte."""
    copy = golden.copy(tmp_path, "copy")
    shutil.rmtree(copy / "report")
    (copy / "manifest.json").unlink()
    stage_files = {p: p.stat().st_mtime_ns for p in copy.rglob("*") if p.is_file() and p.name != ".lock"}
    state = sail_loop(preset="world", run_name="copy", runs_dir=str(tmp_path), overrides=TINY_WORLD,
                      return_state=True)
    assert state.is_completed(), state.message
    states = task_states(state.state_details.flow_run_id)
    assert len(states) == len(UPSTREAM_OF_MIX) + len(FROM_MIX_ON)
    assert set(states.values()) == {"Cached"}, states
    assert {p: p.stat().st_mtime_ns for p in stage_files} == stage_files  # nothing recomputed or rewritten
    assert tree_bytes(copy) == tree_bytes(golden.dir)  # the report and manifest are back, the same


def test_a_code_change_reruns_exactly_that_stage_and_the_stages_after_it(golden, tmp_path):
    """The mixup's code changes (a real change: other human pairs are drawn) in another checkout of the package:
    everything before the mix comes back Cached, the mix and everything after it runs again."""
    runs = tmp_path / "runs"
    code = tmp_path / "checkout"
    for package in ("sail_core", "tasks", "flows", "sail_cli"):
        shutil.copytree(ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    mixup = code / "sail_core" / "algorithm" / "mixup.py"
    source = mixup.read_text()
    assert source.count('derive_seed("mixup", ') == 1
    mixup.write_text(source.replace('derive_seed("mixup", ', 'derive_seed("mixup-v2", '))
    golden.copy(runs, "edited")

    proc = _sail_run(runs, "edited", cwd=code, env=_env(PYTHONPATH=str(code)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = task_states(_flow_run_named("edited").id)
    assert {name: states[name] for name in UPSTREAM_OF_MIX} == {name: "Cached" for name in UPSTREAM_OF_MIX}
    assert {name: states[name] for name in FROM_MIX_ON} == {name: "Completed" for name in FROM_MIX_ON}
    assert len(list((runs / "edited" / "round-01").glob("mix-*/"))) == 2  # the old mix is kept, not overwritten


def test_two_runs_with_the_same_seed_and_threads_are_byte_identical(golden, tmp_path):
    """The golden run (in this process) and a ``sail run`` in another process, same seed and thread count."""
    proc = _sail_run(tmp_path, "again")
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, second = tree_bytes(golden.dir), tree_bytes(tmp_path / "again")
    assert first.keys() == second.keys()
    assert [path for path in first if first[path] != second[path]] == []


def test_a_failed_flow_leaves_nothing_pickled_in_prefect_storage(tmp_path, monkeypatch):
    from prefect.settings import get_current_settings

    storage = Path(get_current_settings().results.local_storage_path)
    before = set(storage.rglob("*")) if storage.exists() else set()
    monkeypatch.setenv("SAIL_FAULT", "seed:seed")
    state = sail_loop(preset="world", run_name="fails", runs_dir=str(tmp_path), overrides=TINY_WORLD,
                      return_state=True)
    assert state.is_failed()
    written = [p for p in storage.rglob("*") if p.is_file() and p not in before]
    assert written, "Prefect writes a failed flow's exception to its result storage"
    for path in written:  # each one JSON, not a pickle: the exception's type and message
        record = json.loads(path.read_text())
        if "metadata" in record:  # Prefect versions that wrap a result in a record with its serializer
            assert record["metadata"]["serializer"]["type"] == "json"
            record = json.loads(record["result"])
        assert record["__exc_type__"] in ("tasks.faults.InjectedFault", "prefect.exceptions.FailedRun"), (path, record)


def test_a_run_name_given_as_a_flow_parameter_cannot_escape_the_runs_directory(tmp_path):
    state = sail_loop(preset="world", run_name="../escape", runs_dir=str(tmp_path / "runs"), overrides=TINY_WORLD,
                      return_state=True)
    assert state.is_failed()
    assert "parameter 'run_name': '../escape' is not a run name" in state.message
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()


def test_a_stage_error_is_one_line_on_the_terminal_and_a_traceback_in_the_prefect_logs(tmp_path):
    # a readable Pick-a-Pic file (the preflight reads schemas only) with a label that is no preference
    seed = write_pickapic(tmp_path / "seed.parquet", [f"a picture of thing {i}" for i in range(20)],
                          [(1.0, 0.0)] * 19 + [(0.7, 0.3)])
    proc = _sail_run_here(tmp_path / "runs", "bad-seed", overrides={**TINY_WORLD, "seed_data.pairs": [str(seed)]})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"sail run: error: file {seed}, row 19, column 'label_0': labels (0.7, 0.3) are not a preference "
        "(1,0), (0,1) or a tie (0.5,0.5)")
    assert any("Traceback" in m and "InputError" in m for m in flow_logs(_flow_run_named("bad-seed").id))


def test_a_run_that_cannot_start_says_so_before_any_stage_one_line_per_problem(tmp_path):
    seed = tmp_path / "seed.parquet"
    seed.write_text("caption,jpg_0\nnot,parquet\n")
    proc = _sail_run_here(tmp_path / "runs", "no-start", overrides={
        **TINY_WORLD, "seed_data.pairs": [str(seed)], "eval.prompts": [str(tmp_path / "eval.txt")]})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    # the error's lines, wherever they are: a loaded machine can add a shutdown line of the local server after them
    start = next((i for i, line in enumerate(lines) if line.startswith("sail run: error:")), 0)
    assert lines[start:start + 3] == [
        "sail run: error: the run cannot start (2 problem(s)):",
        f"  - seed_data.pairs: file {seed}: not a readable Parquet file (Parquet magic bytes not found in footer. "
        "Either the file is corrupted or this is not a parquet file.)",
        f"  - eval.prompts ({tmp_path / 'eval.txt'}): file {tmp_path / 'eval.txt'}: prompt file or folder does not "
        "exist"]
    assert not any((tmp_path / "runs" / "no-start").glob("*/"))  # no stage wrote anything


def test_dropped_prompts_are_counted_in_the_log(tmp_path):
    """A seed file of 16 decided pairs (all of them the seed set) and 12 tie rows: 3 repeat a seed prompt, 1
    repeats another tie's prompt (case aside); a prompt file of 11 lines: 2 seed prompts, 1 repeat."""
    world = pq.read_table(ROOT / "sail_core" / "world" / "data" / "labels.parquet")
    decided = [i for i, (a, b) in enumerate(zip(world["label_0"].to_pylist(), world["label_1"].to_pylist()))
               if a != b][:28]
    table = world.take(decided)
    seed_prompts = [f"seed prompt {i}" for i in range(16)]
    ties = ["seed prompt 0", "seed prompt 1", "Seed  Prompt 2", "tie prompt a", "TIE prompt A",
            *(f"tie prompt {i}" for i in range(7))]
    table = table.set_column(table.schema.get_field_index("caption"), "caption", pa.array(seed_prompts + ties))
    for column in ("label_0", "label_1"):
        table = table.set_column(table.schema.get_field_index(column), column,
                                 pa.array(list(table[column].to_pylist()[:16]) + [0.5] * 12, pa.float64()))
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(table, pairs)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(["seed prompt 3", "seed prompt 4", "new 0", "NEW 0",
                                  *(f"new {i}" for i in range(1, 8))]) + "\n")
    overrides = {**TINY_WORLD, "seed_data.pairs": [str(pairs)], "prompts.files": [str(prompts)]}
    state = sail_loop(preset="world", run_name="dropped", runs_dir=str(tmp_path), overrides=overrides,
                      return_state=True)
    assert state.is_completed(), state.message
    logs = flow_logs(state.state_details.flow_run_id)
    assert ("seed set: 16 pairs (12 ties and 0 unlabelled rows dropped), 8 prompts left for the rounds (3 captions "
            "dropped because the seed set has their prompt, 1 as duplicates)") in logs
    assert ("round 1: 8 prompts from a pool of 8 (2 prompts dropped because the seed set has them, "
            "1 as duplicates)") in logs


def test_the_run_ends_with_its_model_exported_as_a_pipeline_folder(golden):
    """The export stage of the golden run: a pixel-space pipeline folder that its class loads from
    diffusers' own component classes, drawing the images sail's sampler draws for the exported round."""
    from sail_core.export.pixel_pipeline import PixelDiffusionPipeline
    from sail_core.export.run_contents import open_run
    from sail_core.export.sampling import sample_images

    (folder,) = (golden.dir / "export").glob("export-*/")
    info = json.loads((folder / "sail_export.json").read_text())
    assert info["model"] in ("round-00", "round-01") and info["kind"] == "full"
    assert (folder / "README.md").read_text().startswith("---\n") and (folder / "samples.png").is_file()
    # another run of the same name would publish a version too: the golden run published one naming its folder
    mine = [a for a in artifacts("sail-export-golden") if str(folder.resolve()) in a.data]
    assert mine and "PixelDiffusionPipeline.from_pretrained" in mine[0].data and "sail sample" in mine[0].data

    from diffusers import DDIMScheduler

    run = open_run(str(golden.dir))
    sampler = run.config.eval.sampler
    pipe = PixelDiffusionPipeline.from_pretrained(folder)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    prompts, seeds = ["a small yellow circle in the centre", "two large green circles"], [0, 7]
    drawn = pipe([p for p in prompts for _ in seeds], num_inference_steps=sampler.steps,
                 guidance_scale=sampler.guidance_scale, output_type="pt",
                 generator=[torch.Generator().manual_seed(s) for _ in prompts for s in seeds]).images
    sail = (sample_images(run, run.model(info["model"]), prompts, seeds) + 1) / 2
    assert (drawn - sail).abs().max() < 2e-4


def test_the_librarys_warnings_reach_the_flow_runs_log():
    """sail_core logs with the standard logging module (a damaged step checkpoint passed over, a cache copy
    dropped, a store object repaired): the flows forward it to the run's page in the UI."""
    import logging

    from prefect import flow

    from tasks.library_logs import forward_library_logs

    @flow(name="library-warning")
    def warns() -> None:
        forward_library_logs()
        logging.getLogger("sail_core.io.objects").warning("host cache: dropped %s", "abc123")

    state = warns(return_state=True)
    assert "host cache: dropped abc123" in flow_logs(state.state_details.flow_run_id)
