"""What a person sees when a ``sail`` command fails: one line on stderr naming what and where, exit code 1,
the traceback only with ``--debug``. The commands run in this process through ``sail_cli.main.main`` (what
the ``sail`` script calls), their output captured; the exit code and the traceback of ``--debug`` are
checked on a real ``sail`` process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.in_process import one_line_error, sail

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("setting,message", [
    ("eval.max_prompts=-3", "greater than 0"),
    ("seed_train.learning_rate=inf", "finite number"),
    ("reward.beta=inf", "finite number"),
    ("runtime.device=tpu", "use auto, cpu, cuda, cuda:N or mps"),
])
def test_values_that_used_to_pass_validation_are_refused_naming_the_key(setting, message):
    line = one_line_error(sail("config", "--set", setting))
    key = setting.split("=")[0]
    assert line.startswith(f"sail config: error: parameter '{key}': ") and message in line
    assert f"set by the override {key}=" in line and "world.yaml" not in line


def test_a_bad_set_value_names_the_key_not_the_preset_file():
    line = one_line_error(sail("config", "--set", "generate.n_candidates=many"))
    assert "parameter 'generate.n_candidates'" in line and "valid integer" in line and "world.yaml" not in line
    line = one_line_error(sail("config", "--set", "generate.sampler.steps=[1"))
    assert "parameter 'generate.sampler.steps'" in line and "not valid YAML" in line
    line = one_line_error(sail("config", "--set", "generate.no_such_field=1"))
    assert "parameter 'generate.no_such_field': no such config field" in line


def test_a_config_file_that_is_not_yaml_not_utf8_or_not_a_mapping_is_named(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  source: [unclosed\n")
    line = one_line_error(sail("config", "--config", str(broken)))
    assert line.startswith(f"sail config: error: file {broken}: not valid YAML") and "line 3" in line
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("extends: world\n# caf\xe9\n".encode("latin-1"))
    line = one_line_error(sail("config", "--config", str(latin)))
    assert line == (f"sail config: error: file {latin}: not UTF-8 text (byte 0xe9 at offset 20); save it as UTF-8")
    listing = tmp_path / "list.yaml"
    listing.write_text("- model\n- generate\n")
    line = one_line_error(sail("config", "--config", str(listing)))
    assert line.endswith(f"file {listing}: must be a mapping of config sections (model:, generate:, ...), found a list")


def test_a_file_value_that_is_wrong_names_the_file_and_the_key(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("extends: world\nreward:\n  beta: .inf\n")
    line = one_line_error(sail("config", "--config", str(config)))
    assert line == (f"sail config: error: file {config}, parameter 'reward.beta': Input should be a finite number "
                    "(got inf)")


def test_debug_shows_the_traceback_before_or_after_the_command():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for args in (["--debug", "config", "--set", "reward.beta=inf"], ["config", "--set", "reward.beta=inf", "--debug"]):
        proc = subprocess.run([sys.executable, "-m", "sail_cli.main", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 1
        assert "Traceback (most recent call last)" in proc.stderr and "sail_core.errors.InputError" in proc.stderr


def test_a_failing_sail_process_exits_1_with_one_line():
    proc = subprocess.run([sys.executable, "-m", "sail_cli.main", "config", "--set", "reward.beta=inf"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert one_line_error(proc).startswith("sail config: error: parameter 'reward.beta': ")


def test_a_run_name_cannot_escape_the_runs_directory(tmp_path):
    for name in ("../escape", "a/b", "/abs", ".hidden", ""):
        line = one_line_error(sail("run", "--runs-dir", str(tmp_path / "out" / "runs"), "--run-name", name))
        assert line == (f"sail run: error: parameter 'run_name': {name!r} is not a run name: use letters, digits, "
                        "'.', '_' and '-', starting with a letter or digit, at most 128 characters")
    assert not (tmp_path / "out").exists()  # nothing was created anywhere, inside the runs directory or out of it


def test_a_bad_continued_pretraining_is_one_line_naming_it(tmp_path):
    line = one_line_error(sail("world", "pretrain", "--high-noise-share", "1.5", "--out", str(tmp_path / "m")))
    assert line == "sail world: error: parameter 'high_noise_share': must be in [0, 1], got 1.5"
    line = one_line_error(sail("world", "pretrain", "--init", str(tmp_path), "--out", str(tmp_path / "m")))
    assert "not a world model folder (no unet/ in it)" in line and str(tmp_path) in line
    assert not (tmp_path / "m").exists()
