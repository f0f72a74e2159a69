"""Tiny SD1.5 and SDXL through every stage: seed → DPO → generate → rank → mix → DPO → reload."""

import pytest
import torch

from sail_core.data.pairs import read_pairs
from sail_core.io.tables import read_table
from sail_core.io.tensors import read_tensors
from sail_core.models.bundle import load_bundle
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import load_for_inference
from sail_core.run.layout import RunLayout
from sail_core.run.lineage import base_model
from sail_core.run.runner import prepare
from sail_core.run.stage import NoInputs
from sail_core.stages import GENERATE, GenerateInputs, MixInputs, PromptsInputs, RankInputs, TrainInputs
from sail_core.stages.generate import generate_candidates
from sail_core.stages.mix import mix_round
from sail_core.stages.prompts import prepare_prompts
from sail_core.stages.rank import rank_candidates
from sail_core.stages.seed import prepare_seed
from sail_core.stages.train import train_model
from tests.builders import stage_ctx, standard_pickapic, tiny_config


def _pool(path):
    path.write_text("\n".join(f"pool prompt number {i}" for i in range(20)))
    return path


@pytest.mark.parametrize("family,mode", [("sd15", "full"), ("sdxl", "lora"), ("sd15", "lora"), ("sdxl", "full")])
def test_one_round_end_to_end_and_reload(family, mode, tmp_path, request):
    folder = request.getfixturevalue(f"tiny_{family}")
    config = tiny_config(family, folder, standard_pickapic(tmp_path / "pap.parquet"), _pool(tmp_path / "pool.txt"),
                         train_mode=mode)
    layout = RunLayout(tmp_path / "run")
    bundle = load_bundle(config.model)
    base = base_model(config)
    seed = prepare_seed(stage_ctx(config, layout, "seed"), NoInputs())
    assert seed.n_pairs == 8 and seed.n_ties == 8
    m0 = train_model(stage_ctx(config, layout, "r0", "train"), TrainInputs(round_index=0, pairs=seed.pairs, init=base))
    prompts = prepare_prompts(stage_ctx(config, layout, "r1", "prompts"), PromptsInputs(round_index=1, seed=seed))
    generation = GenerateInputs(prompts=prompts, policy=m0.model)
    # ranking reads the generation stage's own directory (its key names the candidates)
    candidates = generate_candidates(stage_ctx(config, layout, layout.rel(prepare(GENERATE, config, layout,
                                                                                  generation).out_dir)), generation)
    assert (candidates.n_prompts, candidates.n_candidates, candidates.shards_generated) == (4, 3, 2)
    pairs = rank_candidates(stage_ctx(config, layout, "r1", "rank"), RankInputs(generation=generation, judge=base))
    self_pairs = read_pairs(pairs.pairs.resolve(layout.root)).to_pylist()
    rewards = read_table(pairs.rewards.resolve(layout.root)).to_pylist()
    for pair in self_pairs:  # best vs worst of each prompt's candidates, with rewards and p(win) kept
        mine = [r["reward"] for r in rewards if r["prompt"] == pair["prompt"]]
        assert pair["reward_w"] == max(mine) and pair["reward_l"] == min(mine) and pair["p_win"] > 0.5
    mixed = mix_round(stage_ctx(config, layout, "r1", "mix"), MixInputs(round_index=1, seed=seed, pairs=pairs))
    assert mixed.counts == {"self": 4, "human": 12}
    m1 = train_model(stage_ctx(config, layout, "r1", "train"),
                     TrainInputs(round_index=1, pairs=mixed.mixed, init=m0.model))
    assert m1.steps == 2 and m1.resumed_from == 0
    checkpoint = m1.model.checkpoint
    assert (checkpoint.kind, len(checkpoint.adapters)) == (("lora", 2) if mode == "lora" else ("full", 0))

    # reload the round-1 model from disk and check it reproduces the in-training policy exactly
    latents = torch.randn(2, *bundle.latent_shape, generator=torch.Generator().manual_seed(0))
    cond = bundle.prompt_encoder.encode(["pool prompt number 1", "another"])
    t = torch.tensor([10, 700])
    kwargs = bundle.unet_kwargs(cond, torch.float32)
    first = load_for_inference(config.model, layout.root, checkpoint, checkpoint).policy(latents, t, **kwargs)
    again = load_for_inference(config.model, layout.root, checkpoint, checkpoint).policy(latents, t, **kwargs)
    base_denoisers = load_for_inference(config.model, layout.root, UnetCheckpoint(), UnetCheckpoint())
    base_out = base_denoisers.policy(latents, t, **kwargs)
    assert torch.equal(first, again)
    assert not torch.allclose(first, base_out)  # training changed the model


def test_generation_resumes_from_finished_shards(tiny_sd15, tmp_path):
    config = tiny_config("sd15", tiny_sd15, standard_pickapic(tmp_path / "pap.parquet"), _pool(tmp_path / "pool.txt"))
    layout = RunLayout(tmp_path / "run")
    seed = prepare_seed(stage_ctx(config, layout, "seed"), NoInputs())
    prompts = prepare_prompts(stage_ctx(config, layout, "prompts"), PromptsInputs(round_index=1, seed=seed))
    inputs = GenerateInputs(prompts=prompts, policy=base_model(config))
    first = generate_candidates(stage_ctx(config, layout, "gen", shards=[1]), inputs)
    assert first is None  # shard 0 is missing: no index yet
    shard1 = read_tensors(layout.root / "gen" / "shard-00001.safetensors")["latents"]
    rest = generate_candidates(stage_ctx(config, layout, "gen"), inputs)
    assert (rest.shards_generated, rest.shards_reused) == (1, 1)
    assert torch.equal(read_tensors(layout.root / "gen" / "shard-00001.safetensors")["latents"], shard1)
    # an uninterrupted run writes the same bytes: samples do not depend on which shards ran together
    whole = generate_candidates(stage_ctx(config, layout, "gen2"), inputs)
    for shard in (0, 1):
        name = f"shard-{shard:05d}.safetensors"
        assert torch.equal(read_tensors(layout.root / "gen" / name)["latents"],
                           read_tensors(layout.root / "gen2" / name)["latents"])
    assert whole.shards_generated == 2


def test_round_prompts_must_not_reuse_earlier_prompts(tiny_sd15, tmp_path):
    from sail_core.errors import InputError
    from sail_core.run.records import PromptsRecord

    config = tiny_config("sd15", tiny_sd15, standard_pickapic(tmp_path / "pap.parquet"), _pool(tmp_path / "pool.txt"))
    layout = RunLayout(tmp_path / "run")
    seed = prepare_seed(stage_ctx(config, layout, "seed"), NoInputs())
    r1 = prepare_prompts(stage_ctx(config, layout, "p1"), PromptsInputs(round_index=1, seed=seed))
    # a later round whose earlier-set list claims round 1 used round 2's prompts (e.g. a changed config)
    r2 = prepare_prompts(stage_ctx(config, layout, "p2"), PromptsInputs(round_index=2, seed=seed, earlier=(r1,)))
    fake = PromptsRecord(round=1, prompts=r2.prompts, conds=r2.conds, n_prompts=r2.n_prompts)
    with pytest.raises(InputError, match="already used by round 1"):
        prepare_prompts(stage_ctx(config, layout, "p2b"), PromptsInputs(round_index=2, seed=seed, earlier=(fake,)))


def test_a_shard_run_generates_and_ranks_its_shards_with_one_model_load(tiny_sd15, tmp_path, monkeypatch):
    from sail_core.models import denoisers
    from sail_core.stages import RANK

    config = tiny_config("sd15", tiny_sd15, standard_pickapic(tmp_path / "pap.parquet"), _pool(tmp_path / "pool.txt"))
    layout = RunLayout(tmp_path / "run")
    seed = prepare_seed(stage_ctx(config, layout, "seed"), NoInputs())
    prompts = prepare_prompts(stage_ctx(config, layout, "prompts"), PromptsInputs(round_index=1, seed=seed))
    generation = GenerateInputs(prompts=prompts, policy=base_model(config))
    # ranking's inputs exist before any candidate does: a shard run gets both steps at once
    ranking = RankInputs(generation=generation, judge=base_model(config))
    loads = []
    load_unet = denoisers.load_unet
    monkeypatch.setattr(denoisers, "load_unet", lambda *args, **kwargs: loads.append(1) or load_unet(*args, **kwargs))
    with denoisers.keep_inference_models():
        for stage, inputs in ((GENERATE, generation), (RANK, ranking)):
            assert prepare(stage, config, layout, inputs).execute(shards=[1]) is None
    assert len(loads) == 1  # the policy, loaded by generation, is the one ranking scores with
    rank_dir = prepare(RANK, config, layout, ranking).out_dir
    assert [p.name for p in sorted(rank_dir.glob("pairs-*.parquet"))] == ["pairs-00001.parquet"]
    for stage, inputs in ((GENERATE, generation), (RANK, ranking)):  # outside the block: each loads its own
        prepare(stage, config, layout, inputs).execute(shards=[0])
    assert len(loads) == 3
