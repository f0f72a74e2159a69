"""``sail experiment`` end to end on the tiny world (real runs on a real Prefect server): the paired
comparisons of ``analysis.comparisons`` equal the hand-computed difference of the models' metrics,
and a model compared with itself is exactly zero; with ``analyses=False`` (``--skip-analyses``) only the
arms run and the analyses' earlier rows are kept."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sail_cli.experiment import run_experiment

from .conftest import TINY_WORLD

pytestmark = pytest.mark.flows


def test_experiment_writes_paired_bootstrap_differences(tmp_path, golden):
    spec = {"name": "cmp", "preset": "world", "seeds": [0, 1],
            "overrides": TINY_WORLD,
            "arms": [{"name": "sail", "rounds": 1}],
            "analysis": {"self_reward_accuracy": False, "bootstrap_resamples": 500,
                         "selection_arm": "sail", "selection_k": [1], "selection_repeats": 1,
                         "comparisons": [["sail/round-01", "sail/base"], ["sail/base", "sail/base"]],
                         "comparison_metrics": ["utility", "taste"]}}
    (tmp_path / "cmp.yaml").write_text(yaml.safe_dump(spec))
    # seed 0 is the presets' own seed: its run is this session's golden run (its stages come back Cached)
    golden.copy(tmp_path / "runs" / "cmp", "seed-0")
    args = (str(tmp_path / "cmp.yaml"), str(tmp_path / "results"), str(tmp_path / "runs"))
    out = run_experiment(*args, analyses=False)  # the arms only
    assert (out / "metrics.parquet").exists() and not (out / "selection_agreement.parquet").exists()
    run_experiment(*args)  # the arms come back cached; now the analyses run
    agreement = pq.read_table(out / "selection_agreement.parquet").to_pylist()
    assert sorted(r["seed"] for r in agreement) == [0, 0, 1, 1]  # K = 1 with and without CRN, per seed
    run_experiment(*args, analyses=False)  # the arms rerun, and the analyses' rows are kept
    assert pq.read_table(out / "selection_agreement.parquet").to_pylist() == agreement

    metrics = pq.read_table(out / "metrics.parquet").to_pylist()
    diffs = {(r["a"], r["b"], r["metric"]): r for r in pq.read_table(out / "differences.parquet").to_pylist()}
    assert len(diffs) == 4
    for metric in ("utility", "taste"):
        value = {(r["seed"], r["model"]): r[metric] for r in metrics}
        # one image per prompt and the same prompts in both seeds: the mean paired difference is the
        # difference of the models' mean scores, averaged over the two seeds
        expected = sum(value[s, "round-01"] - value[s, "base"] for s in (0, 1)) / 2
        row = diffs["sail/round-01", "sail/base", metric]
        assert (row["seeds"], row["prompts"]) == (2, 4)
        assert row["difference"] == pytest.approx(expected, abs=1e-9)
        assert row["low"] <= row["difference"] <= row["high"]
        same = diffs["sail/base", "sail/base", metric]
        assert (same["difference"], same["low"], same["high"], same["p_not_above_zero"]) == (0, 0, 0, 1)
    table = (out / "differences.md").read_text()
    assert "| sail/round-01 | sail/base | utility | 2 | 4 |" in table and "95% CI" in table
    assert Path(tmp_path / "runs" / "cmp" / "seed-0" / metrics[0]["scores"]).exists()
