"""The rank stage with each ranking estimator: draws and stopping reasons on disk, UNet passes in the
record and in the progress, which ends at its total even when prompts stop early."""

import pytest

from sail_core.data.pairs import read_pairs
from sail_core.io.tables import read_table
from sail_core.run.layout import RunLayout
from sail_core.run.lineage import base_model
from sail_core.run.runner import prepare
from sail_core.run.stage import NoInputs, StageContext
from sail_core.stages import GENERATE, GenerateInputs, PromptsInputs, RankInputs, TrainInputs
from sail_core.stages.generate import generate_candidates
from sail_core.stages.prompts import prepare_prompts
from sail_core.stages.rank import rank_candidates
from sail_core.stages.seed import prepare_seed
from sail_core.stages.train import train_model
from tests.builders import stage_ctx, standard_pickapic, tiny_config


@pytest.fixture(scope="module")
def round_one(tiny_sd15, tmp_path_factory):
    """Round-1 candidates (4 prompts × 3) of a seed-DPO model, and that model and the base."""
    tmp = tmp_path_factory.mktemp("rank")
    pool = tmp / "pool.txt"
    pool.write_text("\n".join(f"pool prompt number {i}" for i in range(20)))
    config = tiny_config("sd15", tiny_sd15, standard_pickapic(tmp / "pap.parquet"), pool,
                         **{"seed_train.learning_rate": 1e-2})
    layout = RunLayout(tmp / "run")
    base = base_model(config)
    seed = prepare_seed(stage_ctx(config, layout, "seed"), NoInputs())
    m0 = train_model(stage_ctx(config, layout, "r0"), TrainInputs(round_index=0, pairs=seed.pairs, init=base))
    prompts = prepare_prompts(stage_ctx(config, layout, "prompts"), PromptsInputs(round_index=1, seed=seed))
    generation = GenerateInputs(prompts=prompts, policy=m0.model)
    # ranking reads the generation stage's own directory (its key names the candidates)
    generate_candidates(stage_ctx(config, layout, layout.rel(prepare(GENERATE, config, layout, generation).out_dir)),
                        generation)
    return config, layout, RankInputs(generation=generation, judge=base)


def _rank(round_one, name, **reward):
    config, layout, inputs = round_one
    config = config.model_copy(update={"reward": config.reward.model_copy(update=reward)})
    reports = []
    out = layout.root / name
    out.mkdir()
    ctx = StageContext(config, layout, out, progress=lambda done, total, metrics=None: reports.append((done, total)))
    record = rank_candidates(ctx, inputs)
    rewards = read_table(record.rewards.resolve(layout.root)).to_pylist()
    pairs = read_pairs(record.pairs.resolve(layout.root)).to_pylist()
    return record, rewards, pairs, reports


def test_sequential_ranking_records_draws_reasons_and_passes(round_one):
    record, rewards, pairs, reports = _rank(round_one, "sequential", estimator="sequential", block_draws=2, k_max=8,
                                            confidence=0.6)
    by_prompt = {}
    for row in rewards:
        by_prompt.setdefault(row["prompt_id"], set()).add((row["draws"], row["stop_reason"]))
    assert all(len(v) == 1 for v in by_prompt.values())  # a prompt's candidates share its draws and its reason
    draws = [row["draws"] for row in rewards]
    assert all(d in (2, 4, 6, 8) for d in draws)
    assert {row["stop_reason"] for row in rewards} <= {"settled", "tied", "cap"}
    assert all(row["stop_reason"] in ("settled", "tied") for row in rewards if row["draws"] < 8)
    assert record.unet_passes == 2 * sum(draws) and record.mean_draws == pytest.approx(sum(draws) / len(draws))
    for pair in pairs:  # each pair carries its prompt's draws and reason
        (expected,) = by_prompt[pair["pair_id"].removeprefix("self-")]
        assert (pair["draws"], pair["stop_reason"]) == expected
    # progress counts UNet passes: it never passes its total, and ends exactly at the passes made
    assert all(done <= total for done, total in reports)
    assert reports[-1] == (record.unet_passes, record.unet_passes)
    assert reports[0][1] == 2 * 12 * 8  # it started at the cap: 12 candidates × 8 draws × 2 passes


def test_fixed_ranking_records_k_draws_for_every_candidate(round_one):
    record, rewards, pairs, reports = _rank(round_one, "fixed", k_draws=3)
    assert {(row["draws"], row["stop_reason"]) for row in rewards} == {(3, "fixed")}
    assert record.unet_passes == 2 * 12 * 3 and record.mean_draws == 3
    assert all((p["draws"], p["stop_reason"]) == (3, "fixed") for p in pairs)
    assert reports[-1] == (2 * 12 * 3, 2 * 12 * 3)
