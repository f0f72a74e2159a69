"""Every name that becomes a path is one path component, checked by the one function that checks run
names: a report folder, an experiment's name and its arms' names, a model label. ``..`` and absolute
paths are refused in one line, whichever way the name arrives, and nothing is written anywhere."""

from __future__ import annotations

import pytest

from sail_cli.main import main
from sail_core.errors import InputError
from sail_core.evaluation.run_report import write_run_report
from sail_core.experiments.spec import ExperimentSpec
from sail_core.run.layout import RunLayout, check_name, check_run_name

ESCAPES = ["../../x", "..", "/abs/olute", "a/b", ".hidden", ""]
RULE = "use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"


def _run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("name", ESCAPES)
def test_the_one_check_refuses_anything_but_one_component(name):
    with pytest.raises(InputError) as err:
        check_name(name, "report folder name", "report_dir")
    assert str(err.value) == f"parameter 'report_dir': {name!r} is not a report folder name: {RULE}"
    with pytest.raises(InputError, match="is not a run name"):
        check_run_name(name)
    assert check_name("report-sail.v2_1") == "report-sail.v2_1"


@pytest.mark.parametrize("report_dir", ["../../x", "/abs/report", "sub/report"])
def test_a_report_dir_outside_the_run_is_refused_by_the_flow_and_the_report(tmp_path, report_dir):
    from flows.sail_loop import sail_loop

    runs = tmp_path / "inside" / "runs"
    # the flow's own function (what a deployment runs): refused before the config, the lock or a stage
    with pytest.raises(InputError, match=f"parameter 'report_dir': {report_dir!r} is not a report folder name"):
        sail_loop.fn(preset="world", run_name="r", runs_dir=str(runs), report_dir=report_dir)
    # and where the name becomes a path
    with pytest.raises(InputError, match="report_dir"):
        write_run_report(RunLayout(runs / "r"), report_dir, [], [], None)
    assert list(tmp_path.rglob("*")) == []  # nothing written, inside the run or out of it


def _spec(tmp_path, name: str = "e", arm: str = "sail") -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: {name!r}\npreset: world\narms:\n  - {{name: {arm!r}, rounds: 1}}\n")
    return str(path)


@pytest.mark.parametrize("field,value", [("name", "../nameescape"), ("name", "/tmp/abs"),
                                         ("arm", "../../../../../armescape"), ("arm", "/tmp/armabs")])
def test_experiment_and_arm_names_are_one_component_and_nothing_runs(tmp_path, capsys, field, value):
    work = tmp_path / "work"
    spec = _spec(tmp_path, **{field: value})
    what = "an experiment name" if field == "name" else "an arm name"
    with pytest.raises(InputError, match=f"{value!r} is not {what}"):
        ExperimentSpec.load(spec)
    code, lines = _run_cli(capsys, "experiment", spec, "--out", str(work / "out"), "--runs-dir", str(work / "runs"))
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"sail experiment: error: file {spec}: invalid experiment spec: ")
    assert f"{value!r} is not {what}: {RULE}" in lines[0]
    assert not work.exists()
    # where an escaping name would have landed (other tests' folders beside this one may hold "escape" too)
    assert not [p for p in (*tmp_path.parent.iterdir(), *tmp_path.iterdir()) if p.name in ("nameescape", "armescape")]


def test_a_model_label_and_a_missing_run_directory_are_named(tmp_path, capsys):
    code, lines = _run_cli(capsys, "evaluate", "--preset", "world", "--checkpoint", f"../up={tmp_path}",
                           "--out", str(tmp_path / "out"))
    assert code == 1 and lines == [f"sail evaluate: error: parameter '--checkpoint': '../up' is not a model label "
                                   f"(it names a folder): {RULE}"]
    code, lines = _run_cli(capsys, "evaluate", str(tmp_path / "no-such-run"), "--out", str(tmp_path / "out"))
    assert code == 1 and lines == [f"sail evaluate: error: file {tmp_path / 'no-such-run'}: the run directory "
                                   "does not exist"]
    assert not (tmp_path / "out").exists()
