import json
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
    assert "arms.0.rounds: Input should be greater than or equal to 0" in str(err.value)
    assert "\n" not in str(err.value)  # one line, as every CLI error
    with pytest.raises(InputError, match="no arm named"):
        spec.arm("missing")
    # a colon inside an unquoted description: the error names the file, line and column
    (tmp_path / "colon.yaml").write_text("name: e\npreset: world\narms:\n  - {name: a, description: x (1: 2)}\n")
    with pytest.raises(InputError, match=r"not valid YAML: .* at line 4, column \d+") as err:
        ExperimentSpec.load(tmp_path / "colon.yaml")
    assert err.value.file == str(tmp_path / "colon.yaml")


def test_a_seed_varies_data_generation_and_training_but_not_the_evaluation():
    overrides = seed_overrides(3)
    assert set(overrides.values()) == {3}
    assert not any(key.startswith("eval.") for key in overrides)


def test_ranking_settings_become_one_round_arms(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "name: r\npreset: world\narms:\n  - {name: k10, rounds: 3}\nanalysis:\n  ranking_arms_rounds: 1\n"
        "  ranking:\n    - {name: k10, reward: {k_draws: 10}}\n"
        "    - {name: seq, reward: {estimator: sequential, confidence: 0.7}}\n")
    spec = ExperimentSpec.load(tmp_path / "r.yaml")
    # an arm given by name is kept as written; the others are one round ranked by their setting
    assert spec.arm("k10").rounds == 3 and spec.arm("seq").rounds == 1
    assert spec.arm("seq").overrides == {"reward.estimator": "sequential", "reward.confidence": 0.7}
    assert ExperimentSpec.model_validate(spec.model_dump(mode="json")) == spec  # a dumped spec reloads to itself
    (tmp_path / "twice.yaml").write_text("name: r\npreset: world\narms:\n  - {name: a, rounds: 1}\n"
                                         "  - {name: a, rounds: 2}\n")
    with pytest.raises(InputError, match="unique"):
        ExperimentSpec.load(tmp_path / "twice.yaml")


def test_the_shipped_ranking_spec_loads_and_every_setting_is_a_valid_reward_config():
    from pathlib import Path

    from sail_core.config import RewardConfig

    spec = ExperimentSpec.load(Path(__file__).parents[2] / "experiments" / "ranking.yaml")
    names = [s.name for s in spec.analysis.ranking]
    assert {"k1", "k2", "k4", "k10", "k20"} <= set(names)
    assert {a.name for a in spec.arms} == set(names) and all(a.rounds == 1 for a in spec.arms)
    for setting in spec.analysis.ranking:
        setting.config(RewardConfig())  # raises on a setting the estimators refuse


def test_best_worst_agreement_counts_ties_as_half():
    import numpy as np

    from sail_core.experiments.ranking import best_worst_wins

    members = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    rewards = [0.3, 0.1, 0.2,   # best 0, worst 1: judge agrees (0.9 > 0.1)
               0.1, 0.3, 0.2,   # best 4, worst 3: judge disagrees (0.2 < 0.5)
               0.0, 0.0, 0.0]   # tied rewards: no pair, counts 1/2
    scores = np.array([0.9, 0.1, 0.5, 0.5, 0.2, 0.0, 0.3, 0.3, 0.3])
    assert np.mean(best_worst_wins(rewards, members, scores)) == pytest.approx((1 + 0 + 0.5) / 3)


def test_a_comparison_must_name_an_arm_and_a_model(tmp_path):
    base = "name: c\npreset: world\narms:\n  - {name: sail, rounds: 1}\nanalysis:\n  comparisons: "
    (tmp_path / "ok.yaml").write_text(base + "[[sail/round-01, sail/base]]\n")
    assert ExperimentSpec.load(tmp_path / "ok.yaml").analysis.comparisons == (("sail/round-01", "sail/base"),)
    for bad in ("[[salt/round-01, sail/base]]", "[[sail, sail/base]]"):
        (tmp_path / "bad.yaml").write_text(base + bad + "\n")
        with pytest.raises(InputError, match="is not <arm>/<model>"):
            ExperimentSpec.load(tmp_path / "bad.yaml")


def test_a_plot_of_some_arms_names_arms_of_the_spec_and_is_drawn_once_one_has_rows(tmp_path):
    from sail_core.experiments.plots import plot_utility

    base = "name: c\npreset: world\narms:\n  - {name: sail, rounds: 1}\n  - {name: n2, rounds: 1}\nanalysis:\n  plots: "
    (tmp_path / "bad.yaml").write_text(base + "{ablations: [sail, n3]}\n")
    with pytest.raises(InputError, match=r"analysis.plots.ablations: \['n3'\] not arms of this spec"):
        ExperimentSpec.load(tmp_path / "bad.yaml")
    (tmp_path / "ok.yaml").write_text(base + "{main: [sail], small: [n2]}\n")
    plots = ExperimentSpec.load(tmp_path / "ok.yaml").analysis.plots
    rows = [{"arm": "sail", "model": m, "seed": s, "utility": u}
            for s in (0, 1) for m, u in (("base", 0.8), ("round-01", 0.82 + s / 100))]
    paths = plot_utility(rows, plots, tmp_path / "out")  # n2 has no rows yet: no small.png
    assert [p.name for p in paths] == ["utility.png", "main.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)
    assert not (tmp_path / "out" / "small.png").exists()


def test_ranking_settings_are_compared_with_the_reference_prompt_by_prompt(tmp_path):
    from sail_core.experiments.comparisons import ranking_versus_reference

    (tmp_path / "r.yaml").write_text(
        "name: r\npreset: world\nanalysis:\n  ranking_reference: k10\n  bootstrap_resamples: 4000\n  ranking:\n"
        "    - {name: k10, reward: {k_draws: 10}}\n    - {name: k2, reward: {k_draws: 2}}\n")
    spec = ExperimentSpec.load(tmp_path / "r.yaml")
    rows = [{"seed": 0, "setting": "k10", "passes_per_candidate": 20.0, "prompt_agreement": [1, 1, 0, 0.5]},
            {"seed": 0, "setting": "k2", "passes_per_candidate": 4.0, "prompt_agreement": [1, 0, 0, 0.5]},
            {"seed": 1, "setting": "k10", "passes_per_candidate": 20.0, "prompt_agreement": [0, 1, 1, 1]},
            {"seed": 1, "setting": "k2", "passes_per_candidate": 5.0, "prompt_agreement": [0, 1, 1, 1]}]
    (row,) = ranking_versus_reference(spec.analysis, rows)
    # one prompt of eight lost agreement: -1/8; passes 4/20 and 5/20
    assert (row["setting"], row["seeds"], row["prompts"]) == ("k2", 2, 8)
    assert row["agreement_difference"] == pytest.approx(-1 / 8)
    assert row["passes_ratio"] == pytest.approx((0.2 + 0.25) / 2)
    assert row["low"] == -0.375 and row["high"] == 0.0  # 0 to 3 of 8 resampled units are the lost prompt
    (tmp_path / "bad.yaml").write_text((tmp_path / "r.yaml").read_text().replace("reference: k10", "reference: k9"))
    with pytest.raises(InputError, match="ranking_reference 'k9'"):
        ExperimentSpec.load(tmp_path / "bad.yaml")


@pytest.mark.parametrize("name", ["world.yaml", "ranking.yaml", "claims.yaml", "claims-tune.yaml"])
def test_every_arm_of_a_shipped_spec_is_a_valid_config(name):
    from pathlib import Path

    from sail_core.config import load_config

    spec = ExperimentSpec.load(Path(__file__).parents[2] / "experiments" / name)
    for arm in spec.arms:
        wanted = {**spec.overrides, **seed_overrides(1), **arm.overrides}
        config = load_config(spec.preset, {**wanted, "rounds": arm.rounds}).model_dump(mode="json")
        assert config["rounds"] == arm.rounds, arm.name
        for key, value in wanted.items():  # every override lands on the field it names, with its value
            node = config
            for part in key.split("."):
                node = node[part]
            assert node == json.loads(json.dumps(value)), (arm.name, key, node, value)


def test_the_claims_spec_holds_the_controls_and_reports_on_500_test_images():
    from pathlib import Path

    from sail_core.config import load_config
    from sail_core.training.trainer import total_steps

    spec = ExperimentSpec.load(Path(__file__).parents[2] / "experiments" / "claims.yaml")
    assert len(spec.seeds) >= 5
    config = load_config(spec.preset, dict(spec.overrides))
    assert config.eval.max_prompts * config.eval.seeds_per_prompt >= 500
    assert list(config.eval.prompts) == ["pkg:sail_core.world/data/eval_prompts.txt"]  # the test split, not tune
    # control (b) trains as long as iteration 0 plus three rounds of SAIL
    iteration0 = total_steps(config.seed_train, config.seed_data.seed_size)
    long = spec.arm("seed-only-long").overrides["seed_train.max_steps"]
    assert long == iteration0 + 3 * config.round_train.max_steps
    # the pinned round budget is what the preset's own SAIL round takes: its self pairs as a quarter of the set
    mixed_pairs = round(config.prompts.per_round[0] / config.mixup.alpha)
    natural = total_steps(config.round_train.model_copy(update={"max_steps": None}), mixed_pairs)
    assert config.round_train.max_steps == natural == 24
    assert spec.arm("alpha0-resets").overrides["mixup.alpha"] == 0.0


def test_the_tuning_spec_evaluates_on_the_tuning_prompts_only():
    from pathlib import Path

    from sail_core.config import load_config
    from sail_core.io.paths import local_path
    from sail_core.world.splits import split_prompts

    spec = ExperimentSpec.load(Path(__file__).parents[2] / "experiments" / "claims-tune.yaml")
    config = load_config(spec.preset, dict(spec.overrides))
    tune = Path(local_path(config.eval.prompts[0])).read_text().splitlines()
    test = Path(local_path("pkg:sail_core.world/data/eval_prompts.txt")).read_text().splitlines()
    assert len(tune) >= config.eval.max_prompts and not set(tune) & set(test)
    assert set(tune) == set(split_prompts().tune)


def _results(folder, spec, rows, commands):
    """A results folder as ``sail experiment --out`` leaves it: metrics rows and command.txt."""
    from sail_core.experiments.aggregate import write_results

    write_results(folder, "metrics", rows, "")
    (folder / "command.txt").write_text(json.dumps({"commands": commands, "spec": spec.model_dump(mode="json")}))


def test_merging_results_of_another_process_replaces_its_arm_and_seed_rows_and_keeps_the_rest(tmp_path):
    import pyarrow.parquet as pq

    from sail_cli.experiment import merge_experiment

    (tmp_path / "m.yaml").write_text("name: m\npreset: world\narms:\n  - {name: sail, rounds: 1}\n"
                                     "  - {name: n2, rounds: 1, overrides: {generate.n_candidates: 2}}\n")
    spec = ExperimentSpec.load(tmp_path / "m.yaml")

    def row(arm, seed, model, utility):
        return {"arm": arm, "seed": seed, "model": model, "utility": utility, "faithful": 0.5,
                "faithfulness": 0.9, "taste": 0.6, "utility_win_rate": None, "scores": "x.parquet"}

    ours = [row("sail", 0, "round-01", 0.80), row("n2", 0, "round-01", 0.70), row("sail", 1, "round-01", 0.10)]
    theirs = [row("sail", 1, "base", 0.75), row("sail", 1, "round-01", 0.81), row("n2", 2, "round-01", 0.72)]
    _results(tmp_path / "results" / "m", spec, ours, ["sail experiment m.yaml --seed 0"])
    _results(tmp_path / "side" / "m", spec, theirs, ["sail experiment m.yaml --seed 1 --out side"])

    out = merge_experiment(str(tmp_path / "m.yaml"), str(tmp_path / "results"), str(tmp_path / "runs"),
                           str(tmp_path / "side"))
    rows = pq.read_table(out / "metrics.parquet").to_pylist()
    merged = {(r["arm"], r["seed"], r["model"]): r["utility"] for r in rows}
    assert len(rows) == len(merged) == 5
    # seed 1's sail rows are theirs (our stale 0.10 is gone), seeds 0 and 2 are kept from each side
    assert merged == {("sail", 0, "round-01"): 0.80, ("n2", 0, "round-01"): 0.70, ("sail", 1, "base"): 0.75,
                      ("sail", 1, "round-01"): 0.81, ("n2", 2, "round-01"): 0.72}
    assert "| sail | round-01 | 2 | 0.805 ± 0.007 |" in (out / "metrics.md").read_text()
    record = json.loads((out / "command.txt").read_text())
    assert record["commands"][:2] == ["sail experiment m.yaml --seed 0", "sail experiment m.yaml --seed 1 --out side"]
    assert record["seeds_done"] == [0, 1, 2]

    # results of another version of an arm are refused, naming the arm and the file
    (tmp_path / "m2.yaml").write_text((tmp_path / "m.yaml").read_text().replace("n_candidates: 2", "n_candidates: 3"))
    _results(tmp_path / "other" / "m", ExperimentSpec.load(tmp_path / "m2.yaml"), theirs, [])
    with pytest.raises(InputError, match=r"arms \['n2'\] have other settings there") as err:
        merge_experiment(str(tmp_path / "m.yaml"), str(tmp_path / "results"), str(tmp_path / "runs"),
                         str(tmp_path / "other"))
    assert err.value.file == str(tmp_path / "other" / "m" / "command.txt")
    (tmp_path / "other" / "m" / "command.txt").write_text('{"commands": []}')  # no spec recorded
    with pytest.raises(InputError, match="its spec cannot be read"):
        merge_experiment(str(tmp_path / "m.yaml"), str(tmp_path / "results"), str(tmp_path / "runs"),
                         str(tmp_path / "other"))
    with pytest.raises(InputError, match="no results of experiment 'm' to merge"):
        merge_experiment(str(tmp_path / "m.yaml"), str(tmp_path / "results"), str(tmp_path / "runs"),
                         str(tmp_path / "nowhere"))
