"""Ranking estimators on the tiny SD1.5 UNet: fixed K as before, and sequential stopping.

Where a test needs a candidate the reward clearly prefers, the policy is the reference UNet
fine-tuned for a few steps to denoise that one latent: a real denoiser whose preference is known.
"""

import copy

import pytest
import torch

from sail_core.algorithm.noising import add_noise
from sail_core.algorithm.ranking import Ranking, planned_passes, rank_rewards
from sail_core.algorithm.reward import implicit_rewards
from sail_core.algorithm.selection import select_pair
from sail_core.algorithm.sequential import STOP_CAP, STOP_FIXED, STOP_SETTLED, STOP_TIED
from sail_core.config import ModelConfig, RewardConfig
from sail_core.models.bundle import load_bundle, load_unet
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import TwoUnets

SEQUENTIAL = dict(estimator="sequential", block_draws=2, k_max=12, confidence=0.9, batch_size=16)


@pytest.fixture(scope="module")
def sd15(tiny_sd15):
    config = ModelConfig(family="sd15", source=str(tiny_sd15), resolution=32, local_files_only=True)
    return config, load_bundle(config)


def _latent(bundle, seed):
    return torch.randn(1, *bundle.latent_shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def world(sd15):
    """(denoisers, bundle, favourite latent, other latents, conditioning of one prompt)."""
    config, bundle = sd15
    reference = load_unet(config, UnetCheckpoint(), ".").eval()
    favourite = _latent(bundle, 7)
    cond = bundle.prompt_encoder.encode(["a red circle"])
    policy = copy.deepcopy(reference).train()
    optimizer = torch.optim.Adam(policy.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    kwargs = bundle.unet_kwargs(cond.select([0] * 8), torch.float32)
    for _ in range(30):  # learn to denoise the favourite: its Eq. 8 reward rises, the others' do not
        t = torch.randint(0, 1000, (8,), generator=g)
        eps = torch.randn(8, *bundle.latent_shape, generator=g)
        noisy = add_noise(bundle.noise_scheduler, favourite.expand(8, -1, -1, -1), eps, t)
        loss = (policy(noisy, t, **kwargs).sample - eps).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval().requires_grad_(False)
    others = torch.cat([_latent(bundle, s) for s in (1, 2, 3)])
    return TwoUnets(policy, reference.requires_grad_(False)), bundle, favourite, others, cond


def _rank(world, latents, groups, seeds, **options) -> Ranking:
    denoisers, bundle, _, _, cond = world
    config = RewardConfig(**{**SEQUENTIAL, **options})
    return rank_rewards(denoisers, bundle, latents, cond.select([0] * len(seeds)), groups, seeds, config)


def test_fixed_estimator_is_the_paper_path_unchanged(world):
    denoisers, bundle, favourite, others, cond = world
    latents = torch.cat([favourite, others])
    config = RewardConfig(k_draws=3, batch_size=5)
    ranking = rank_rewards(denoisers, bundle, latents, cond, [0] * 4, ["p"], config)
    before = implicit_rewards(denoisers, bundle, latents, cond, [0] * 4, ["p"], config)
    assert torch.equal(ranking.rewards, before.rewards)
    assert ranking.draws.tolist() == [3] * 4 and ranking.stop_reasons == [STOP_FIXED]
    assert ranking.unet_passes == 2 * 4 * 3


def test_identical_candidates_stop_at_the_first_check_without_a_pair(world):
    _, _, favourite, _, _ = world
    ranking = _rank(world, favourite.repeat(4, 1, 1, 1), [0] * 4, ["same"])
    assert ranking.stop_reasons == [STOP_TIED]
    assert ranking.draws.tolist() == [2] * 4  # one block
    assert select_pair(ranking.rewards.tolist(), "best_worst", "same") is None


def test_one_clearly_better_candidate_stops_early_and_wins(world):
    _, _, favourite, others, _ = world
    plain = others[:1]
    latents = torch.cat([plain, favourite, plain, plain])
    ranking = _rank(world, latents, [0] * 4, ["clear"])
    assert ranking.stop_reasons == [STOP_SETTLED]
    assert ranking.draws[0].item() < 12  # before the cap
    pair = select_pair(ranking.rewards.tolist(), "best_worst", "clear")
    assert pair.winner == 1
    # the chosen best is the same one the paper's fixed K = 12 picks
    fixed = _rank(world, latents, [0] * 4, ["clear"], estimator="fixed", k_draws=12)
    assert select_pair(fixed.rewards.tolist(), "best_worst", "clear").winner == 1


def test_the_cap_is_respected(world):
    _, _, favourite, others, _ = world
    latents = torch.cat([favourite, others])
    unreachable = _rank(world, latents, [0] * 4, ["capped"], confidence=1 - 1e-12)
    assert unreachable.stop_reasons == [STOP_CAP] and unreachable.draws.tolist() == [12] * 4
    for confidence in (0.5, 0.9, 0.99):
        ranking = _rank(world, latents, [0] * 4, ["capped"], confidence=confidence)
        assert ranking.draws.max().item() <= 12


def test_stopping_is_deterministic_for_a_seed(world):
    _, _, favourite, others, _ = world
    latents = torch.cat([favourite, others])
    first = _rank(world, latents, [0] * 4, ["seeded"])
    again = _rank(world, latents, [0] * 4, ["seeded"])
    assert torch.equal(first.rewards, again.rewards) and torch.equal(first.draws, again.draws)
    assert first.stop_reasons == again.stop_reasons
    other = _rank(world, latents, [0] * 4, ["another seed"])
    assert not torch.equal(first.rewards, other.rewards)  # the seed parts name the draws


def test_batching_unfinished_prompts_changes_no_result(world):
    """Three prompts that stop after different numbers of blocks, scored together in small batches
    (a batch spans prompts and blocks) and each alone: the same draws, rewards and decisions."""
    _, _, favourite, others, _ = world
    plain = others[:1]
    prompts = {
        "tied": favourite.repeat(3, 1, 1, 1),
        "clear": torch.cat([plain, favourite, plain]),
        "open": others,
    }
    names = list(prompts)
    latents = torch.cat([prompts[n] for n in names])
    groups = [g for g, n in enumerate(names) for _ in range(3)]
    together = _rank(world, latents, groups, names, batch_size=5)
    for g, name in enumerate(names):
        alone = _rank(world, prompts[name], [0] * 3, [name], batch_size=64)
        rows = slice(3 * g, 3 * g + 3)
        assert together.stop_reasons[g] == alone.stop_reasons[0]
        assert torch.equal(together.draws[rows], alone.draws)
        torch.testing.assert_close(together.rewards[rows], alone.rewards, rtol=1e-6, atol=1e-9)
    assert len({d.item() for d in together.draws}) == 3  # the prompts did stop at different blocks


def test_progress_counts_passes_and_ends_at_its_total(world):
    _, _, favourite, others, _ = world
    latents = torch.cat([favourite.repeat(3, 1, 1, 1), others])
    denoisers, bundle, _, _, cond = world
    config = RewardConfig(**SEQUENTIAL)
    done, total = [0], [planned_passes(config, len(latents))]

    def on_passes(passes: int, dropped: int) -> None:
        done[0] += passes
        total[0] -= dropped
        assert done[0] <= total[0]

    ranking = rank_rewards(denoisers, bundle, latents, cond.select([0, 0]), [0, 0, 0, 1, 1, 1], ["a", "b"], config,
                           on_passes)
    assert done[0] == total[0] == ranking.unet_passes == 2 * int(ranking.draws.sum())
    assert ranking.unet_passes < planned_passes(config, len(latents))  # the tied prompt stopped early


def test_the_experiment_replays_each_estimator_on_shared_draws(world):
    """``sail_core.experiments.ranking`` computes a stream's errors once and replays the settings on them:
    the same draws, stops and rewards as running each estimator (sequential, and fixed K stratified and
    antithetic, whose K draws are the stream's first block)."""
    from sail_core.algorithm.reward import timestep_range
    from sail_core.experiments.ranking import block_errors, draw_stream, replay

    denoisers, bundle, favourite, others, cond = world
    plain = others[:1]
    latents = torch.cat([favourite.repeat(3, 1, 1, 1), torch.cat([plain, favourite, plain]), others])
    groups, names = [0, 0, 0, 1, 1, 1, 2, 2, 2], ["tied", "clear", "open"]
    members = [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    conds = cond.select([0, 0, 0])
    for options in (dict(), dict(estimator="fixed", k_draws=4, stratified=True, antithetic=True),
                    dict(block_draws=4, stratified=True, antithetic=True, confidence=0.7)):
        config = RewardConfig(**{**SEQUENTIAL, **options})
        plan, n_blocks = draw_stream(config, timestep_range(config, bundle))
        errors = block_errors(denoisers, bundle, latents, conds, groups, names, plan, n_blocks, batch_size=7)
        rewards, draws, reasons = replay(config, *errors, members)
        direct = rank_rewards(denoisers, bundle, latents, conds, groups, names, config)
        assert reasons == direct.stop_reasons and torch.equal(draws, direct.draws)
        torch.testing.assert_close(rewards, direct.rewards, rtol=1e-6, atol=1e-9)
    # the paper's fixed K takes the plain stream's first K draws: one stream serves every K
    assert draw_stream(RewardConfig(k_draws=1), (0, 1000))[0] == draw_stream(RewardConfig(**SEQUENTIAL), (0, 1000))[0]
    assert draw_stream(RewardConfig(k_draws=3, common_random_numbers=False), (0, 1000)) is None
