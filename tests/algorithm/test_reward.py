"""The implicit self-reward: hand-computed values, common random numbers, and the variance they remove."""

import math

import numpy as np
import pytest
import torch

from sail_core.algorithm.reward import draw_noise, implicit_rewards, preference_probability
from sail_core.config import ModelConfig, RewardConfig
from sail_core.models.bundle import load_bundle, load_unet
from sail_core.models.checkpoint import UnetCheckpoint
from sail_core.models.denoisers import TwoUnets


class ConstantPredictor(torch.nn.Module):
    """A denoiser whose prediction is a constant everywhere: its errors are computable by hand."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.tensor(value), requires_grad=False)

    def forward(self, sample, timesteps, **kwargs):
        return type("Out", (), {"sample": torch.full_like(sample, self.value.item())})()

    @property
    def dtype(self):
        return torch.float32


@pytest.fixture(scope="module")
def sd15(tiny_sd15):
    config = ModelConfig(family="sd15", source=str(tiny_sd15), resolution=32, local_files_only=True)
    return config, load_bundle(config)


def test_reward_matches_hand_computation(sd15):
    _, bundle = sd15
    latents = torch.randn(2, *bundle.latent_shape, generator=torch.Generator().manual_seed(1))
    cond = bundle.prompt_encoder.encode(["a red circle"])
    config = RewardConfig(k_draws=3, beta=5000.0, batch_size=4)
    denoisers = TwoUnets(ConstantPredictor(0.0), ConstantPredictor(1.0))
    estimate = implicit_rewards(denoisers, bundle, latents, cond, [0, 0], ["prompt-0"], config)
    # policy predicts 0: error = mean(ε²); reference predicts 1: error = mean((ε − 1)²)
    _, noise = draw_noise(bundle.latent_shape, 3, (0, 1000), "prompt-0")
    gap = [(e.pow(2).mean() - (e - 1).pow(2).mean()).item() for e in noise]
    expected = -0.5 * 5000.0 * sum(gap) / 3
    assert estimate.rewards.tolist() == pytest.approx([expected, expected], rel=1e-5)
    assert math.isclose(preference_probability(2.0, 0.0).item(), 1 / (1 + math.exp(-2.0)))


def test_reward_of_real_unets_equals_manual_forward(sd15):
    config, bundle = sd15
    policy = load_unet(config, UnetCheckpoint(), ".")
    reference = load_unet(config, UnetCheckpoint(), ".")
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.01 * torch.randn_like(p))
    latents = torch.randn(1, *bundle.latent_shape, generator=torch.Generator().manual_seed(2))
    cond = bundle.prompt_encoder.encode(["two blue squares"])
    estimate = implicit_rewards(TwoUnets(policy, reference), bundle, latents, cond, [0], ["p"],
                                RewardConfig(k_draws=1, beta=100.0))
    t, noise = draw_noise(bundle.latent_shape, 1, (0, 1000), "p")
    alpha = bundle.noise_scheduler.alphas_cumprod[t]
    noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
    kwargs = bundle.unet_kwargs(cond, torch.float32)
    with torch.no_grad():
        e_pol = (policy(noisy, t, **kwargs).sample - noise).pow(2).mean()
        e_ref = (reference(noisy, t, **kwargs).sample - noise).pow(2).mean()
    assert estimate.rewards.item() == pytest.approx((-50.0 * (e_pol - e_ref)).item(), rel=1e-4)


def _perturbed_pair(bundle, scale):
    x = torch.randn(1, *bundle.latent_shape, generator=torch.Generator().manual_seed(3))
    return torch.cat([x, x + scale * torch.randn_like(x)])


def test_identical_candidates_get_identical_rewards_with_common_random_numbers(sd15):
    config, bundle = sd15
    unet = load_unet(config, UnetCheckpoint(), ".")
    ref = load_unet(config, UnetCheckpoint(), ".")
    with torch.no_grad():
        for p in ref.parameters():
            p.mul_(1.01)
    latents = _perturbed_pair(bundle, 0.0)
    cond = bundle.prompt_encoder.encode(["a cat"])
    crn = implicit_rewards(TwoUnets(unet, ref), bundle, latents, cond, [0, 0], ["p"], RewardConfig(k_draws=4))
    assert crn.rewards[0].item() == crn.rewards[1].item()
    independent = implicit_rewards(TwoUnets(unet, ref), bundle, latents, cond, [0, 0], ["p"],
                                   RewardConfig(k_draws=4, common_random_numbers=False))
    assert independent.rewards[0].item() != independent.rewards[1].item()


def test_common_random_numbers_reduce_variance_of_reward_differences(sd15):
    """Near-identical candidates: Var(r_A − r_B) over repeated estimates, shared vs independent draws."""
    config, bundle = sd15
    unet = load_unet(config, UnetCheckpoint(), ".")
    ref = load_unet(config, UnetCheckpoint(), ".")
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    latents = _perturbed_pair(bundle, 0.05)
    cond = bundle.prompt_encoder.encode(["a small green triangle"])
    denoisers = TwoUnets(unet, ref)
    diffs = {}
    for crn in (True, False):
        cfg = RewardConfig(k_draws=10, beta=5000.0, common_random_numbers=crn, batch_size=20)
        diffs[crn] = [
            (lambda r: (r[0] - r[1]).item())(
                implicit_rewards(denoisers, bundle, latents, cond, [0, 0], [f"repeat-{i}"], cfg).rewards)
            for i in range(12)
        ]
    ratio = np.var(diffs[False]) / np.var(diffs[True])
    print(f"Var(r_A - r_B): independent {np.var(diffs[False]):.4g}, common {np.var(diffs[True]):.4g}, "
          f"ratio {ratio:.1f}x")
    assert ratio > 20
