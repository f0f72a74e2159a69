"""Where a deployment's flow run works (``sail_core.run.workdir``): its working directory from the
environment, a run directory inside the worker's temporary clone refused, clones of dead runs removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sail_core.errors import InputError
from sail_core.run.stage import stage_label
from sail_core.run.workdir import (
    CLONE_MARK,
    deployment_workdir,
    mark_clone,
    sweep_dead_clones,
    temporary_clone,
    temporary_clone_problem,
)


def test_the_workers_own_workdir_wins_over_the_deploying_checkout(tmp_path):
    own, deployed = tmp_path / "own", tmp_path / "deployed"
    own.mkdir()
    deployed.mkdir()
    assert deployment_workdir({"SAIL_WORKDIR": str(own), "SAIL_DEPLOYED_FROM": str(deployed)}) == own
    assert deployment_workdir({"SAIL_DEPLOYED_FROM": str(deployed)}) == deployed
    assert deployment_workdir({"SAIL_WORKDIR": "  "}) is None
    assert deployment_workdir({}) is None


def test_a_workdir_that_is_relative_or_missing_is_one_line_naming_the_variable(tmp_path):
    with pytest.raises(InputError) as relative:
        deployment_workdir({"SAIL_WORKDIR": "runs-here"})
    assert str(relative.value) == ("parameter 'SAIL_WORKDIR': 'runs-here' is not an absolute path: set SAIL_WORKDIR "
                                   "to the directory that holds this host's runs and data")
    with pytest.raises(InputError) as missing:
        deployment_workdir({"SAIL_DEPLOYED_FROM": str(tmp_path / "gone")})
    assert str(missing.value).startswith(f"parameter 'SAIL_DEPLOYED_FROM': {tmp_path / 'gone'} is not a directory on "
                                         "this host")


def test_only_a_run_directory_inside_the_clone_is_a_problem(tmp_path):
    clone = tmp_path / "tmpq9prefect"
    cwd = clone / "repository"
    cwd.mkdir(parents=True)
    assert temporary_clone(cwd, tmp_path) == clone
    assert temporary_clone(tmp_path / "elsewhere", tmp_path) is None
    assert temporary_clone(tmp_path / "tmpq9other" / "x", tmp_path) is None  # not a worker's directory
    assert "inside this flow run's temporary directory" in temporary_clone_problem("runs/a", cwd, tmp_path)
    assert "inside" in temporary_clone_problem(str(clone / "x" / "a"), cwd, tmp_path)
    assert temporary_clone_problem(str(tmp_path / "kept" / "a"), cwd, tmp_path) is None
    assert temporary_clone_problem("s3://bucket/runs/a", cwd, tmp_path) is None
    assert temporary_clone_problem("runs/a", tmp_path / "checkout", tmp_path) is None


def test_the_clones_of_dead_flow_runs_are_removed_and_no_other(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_clone, live_clone, unmarked, foreign = (tmp_path / n for n in ("tmpaprefect", "tmpbprefect", "tmpcprefect",
                                                                        "tmpd"))
    for folder in (dead_clone, live_clone, unmarked, foreign):
        (folder / "repository").mkdir(parents=True)
    (dead_clone / CLONE_MARK).write_text(json.dumps({"pid": int(dead.stdout), "started": None}))
    mark_clone(live_clone)
    # a live pid whose start time differs is another process that was given the dead one's pid
    (foreign / CLONE_MARK).write_text(json.dumps({"pid": os.getpid(), "started": "1"}))
    assert sweep_dead_clones(tmp_path) == [dead_clone]
    assert not dead_clone.exists() and live_clone.exists() and unmarked.exists() and foreign.exists()
    reused = tmp_path / "tmpeprefect"
    reused.mkdir()
    (reused / CLONE_MARK).write_text(json.dumps({"pid": os.getpid(), "started": "1"}))
    assert sweep_dead_clones(tmp_path) == [reused]


@pytest.mark.parametrize(("stage", "group", "label"), [
    ("seed", "seed", "seed"), ("export", "export", "export"), ("real", "real", "real"),
    ("evaluate", "eval-base", "evaluate-base"), ("evaluate", "eval-round-01", "evaluate-round-01"),
    ("train", "round-00", "train-round-00"), ("generate", "round-01", "generate-round-01"),
])
def test_a_stage_and_its_group_are_each_named_once(stage, group, label):
    assert stage_label(stage, group) == label
