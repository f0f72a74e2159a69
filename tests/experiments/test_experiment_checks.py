"""``sail experiment`` checks the whole spec before anything runs: the preset, every arm's overrides, the
analyses' config (the spec's overrides without an arm's), the ranking settings, the seeds and ``--arm``;
every problem is one line, and no arm, server or results folder is started."""

from __future__ import annotations

import pytest

import sail_cli.experiment as experiment
from sail_cli.main import main


@pytest.fixture(autouse=True)
def nothing_runs(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an arm ran although the spec is invalid")

    monkeypatch.setattr(experiment, "_run_arm", refuse)


def _experiment(tmp_path, capsys, spec_text: str, *extra: str) -> tuple[int, list[str], str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(spec_text)
    code = main(["experiment", str(spec), "--out", str(tmp_path / "out"), "--runs-dir", str(tmp_path / "runs"),
                 *extra])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()
    return code, err.strip().splitlines(), str(spec)


def test_a_bad_arm_among_good_ones_is_one_line_before_any_arm_runs(tmp_path, capsys):
    code, lines, spec = _experiment(tmp_path, capsys, (
        "name: e\npreset: world\narms:\n  - {name: good, rounds: 1}\n"
        "  - {name: typo, rounds: 1, overrides: {reward.k_drawz: 4}}\n"
        "  - {name: range, rounds: 1, overrides: {reward.k_draws: 0}}\n"))
    assert code == 1
    assert lines[0] == f"sail experiment: error: file {spec}: experiment 'e': 2 problem(s), nothing was run:"
    assert len(lines) == 3, lines
    assert lines[1].startswith("arm 'typo': parameter 'reward.k_drawz': no such config field")
    assert lines[2].startswith("arm 'range': parameter 'reward.k_draws': ")


def test_a_bad_preset_is_one_line(tmp_path, capsys):
    code, lines, _ = _experiment(tmp_path, capsys, "name: e\npreset: no-such-preset\narms:\n  - {name: a, rounds: 1}\n")
    assert code == 1 and len(lines) == 2, lines
    assert lines[1].startswith("preset 'no-such-preset': parameter 'no-such-preset': unknown preset")


def test_a_spec_override_that_only_the_arms_make_valid_fails_before_the_arms_not_after(tmp_path, capsys):
    # antithetic draws need an even K: every arm sets one, but the analyses use the spec's overrides alone
    text = ("name: e\npreset: world\noverrides: {reward.antithetic: true, reward.k_draws: 3}\n"
            "arms:\n  - {name: a, rounds: 1, overrides: {reward.k_draws: 4}}\n"
            "  - {name: b, rounds: 2, overrides: {reward.k_draws: 6}}\n")
    code, lines, _ = _experiment(tmp_path, capsys, text)
    assert code == 1 and len(lines) == 2, lines
    assert lines[1].startswith("the analyses (the spec's overrides without an arm's): ") and "k_draws" in lines[1]
    # without the analyses, the same spec is valid: the check passes and the arms would run
    assert experiment.plan_experiment(str(tmp_path / "spec.yaml"), analyses=False)[2] == ["a", "b"]


def test_unknown_arms_and_repeated_seeds_are_named(tmp_path, capsys):
    code, lines, _ = _experiment(tmp_path, capsys, "name: e\npreset: world\narms:\n  - {name: a, rounds: 1}\n",
                                 "--arm", "a", "--arm", "nope", "--seed", "1", "--seed", "1")
    assert code == 1 and lines[1:] == ["--arm 'nope': no arm of that name (the spec's: a)",
                                       "seeds: [1] given more than once"], lines
