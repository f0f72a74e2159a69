"""The position probe's measure: the share of the true difference between two prompts' posterior means
that a model's predictions reproduce, along its direction."""

from __future__ import annotations

import pytest
import torch

from bench.world_word_response import word_response


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    # the object's mean mass on the left for one prompt, on the right for the other, over a grey mean
    a, b = torch.zeros(3, 16, 16), torch.zeros(3, 16, 16)
    a[0, :, :6] = 0.5
    b[0, :, 10:] = 0.5
    return a, b


def test_a_model_that_predicts_the_posterior_means_responds_fully_and_one_that_ignores_the_word_not_at_all():
    truth = _pair()
    assert word_response(truth, truth) == pytest.approx(1.0)
    same = truth[0] * 0.5 + truth[1] * 0.5
    assert word_response((same, same), truth) == pytest.approx(0.0)


def test_a_partial_or_wrong_way_response_is_scaled_and_signed_along_the_true_difference():
    a, b = _pair()
    offset = torch.full_like(a, 0.3)  # a shared shift (the background both prompts get) is not a response
    assert word_response((a * 0.25 + offset, b * 0.25 + offset), (a, b)) == pytest.approx(0.25)
    assert word_response((b, a), (a, b)) == pytest.approx(-1.0)
    # a difference orthogonal to the true one (here: vertical where the truth is horizontal) counts 0
    up, down = torch.zeros_like(a), torch.zeros_like(a)
    up[0, :6, 6:10], down[0, 10:, 6:10] = 0.5, 0.5
    assert word_response((up, down), (a, b)) == pytest.approx(0.0)
