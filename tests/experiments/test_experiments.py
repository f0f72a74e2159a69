import math

import pytest

from sail_core.errors import InputError
from sail_core.experiments.aggregate import markdown_table, summarize_over_seeds
from sail_core.experiments.spec import ExperimentSpec, seed_overrides


def test_mean_and_sample_sd_over_seeds():
    rows = [{"arm": "sail", "model": "round-01", "utility": u} for u in (0.5, 0.6, 0.7)]
    rows += [{"arm": "sail", "model": "base", "utility": 0.4}]
    summary = summarize_over_seeds(rows, ["utility"])
    first = summary[0]
    assert (first["model"], first["seeds"]) == ("round-01", 3)
    assert first["utility"] == pytest.approx(0.6) and first["utility_sd"] == pytest.approx(0.1)
    assert math.isnan(summary[1]["utility_sd"])  # one seed: no spread
    assert "| sail | round-01 | 3 | 0.600 ± 0.100 |" in markdown_table(summary, ["utility"])


def test_spec_loading_names_the_problem(tmp_path):
    (tmp_path / "ok.yaml").write_text("name: e\npreset: world\narms:\n  - {name: sail, rounds: 2}\n")
    spec = ExperimentSpec.load(tmp_path / "ok.yaml")
    assert spec.seeds == (0, 1, 2) and spec.arm("sail").rounds == 2
    (tmp_path / "bad.yaml").write_text("name: e\npreset: world\narms:\n  - {name: sail, rounds: -1}\n")
    with pytest.raises(InputError) as err:
        ExperimentSpec.load(tmp_path / "bad.yaml")
    assert err.value.file == str(tmp_path / "bad.yaml")
    with pytest.raises(InputError, match="no arm named"):
        spec.arm("missing")


def test_a_seed_varies_data_generation_and_training_but_not_the_evaluation():
    overrides = seed_overrides(3)
    assert set(overrides.values()) == {3}
    assert not any(key.startswith("eval.") for key in overrides)
