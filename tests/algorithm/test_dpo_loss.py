import math

import torch

from sail_core.algorithm.dpo_loss import dpo_loss


def test_loss_is_log2_when_policy_equals_reference():
    mse_w, mse_l = torch.tensor([0.3, 0.9]), torch.tensor([0.5, 0.1])
    terms = dpo_loss(mse_w, mse_l, mse_w.clone(), mse_l.clone(), beta=5000.0)
    assert math.isclose(terms.loss.item(), math.log(2), rel_tol=1e-6)
    assert terms.implicit_accuracy.item() == 0.0  # margins are exactly 0, never > 0


def test_hand_computed_value_and_sign():
    # policy lowered the winner's error by 1e-4 relative to the reference and left the loser alone
    mse_w, mse_l = torch.tensor([0.2000]), torch.tensor([0.3000])
    ref_w, ref_l = torch.tensor([0.2001]), torch.tensor([0.3000])
    terms = dpo_loss(mse_w, mse_l, ref_w, ref_l, beta=5000.0)
    inside = -0.5 * 5000.0 * ((0.2000 - 0.3000) - (0.2001 - 0.3000))  # = +0.25
    assert math.isclose(terms.inside.item(), inside, rel_tol=1e-4)
    assert math.isclose(terms.loss.item(), -math.log(1 / (1 + math.exp(-inside))), rel_tol=1e-4)
    assert terms.loss.item() < math.log(2)  # preferring the winner more than the reference lowers the loss
    assert terms.implicit_accuracy.item() == 1.0


def test_gradient_pushes_winner_error_down_and_loser_error_up():
    mse_w = torch.tensor([0.5], requires_grad=True)
    mse_l = torch.tensor([0.5], requires_grad=True)
    dpo_loss(mse_w, mse_l, torch.tensor([0.5]), torch.tensor([0.5]), beta=10.0).loss.backward()
    assert mse_w.grad.item() > 0 and mse_l.grad.item() < 0  # descent lowers mse_w, raises mse_l
    # at equality: d/d(mse_w) of -log σ(-β/2 (w - l)) = β/2 · σ(0) = β/4
    assert math.isclose(mse_w.grad.item(), 10.0 / 4, rel_tol=1e-6)
