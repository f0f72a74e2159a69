"""The Diffusion-DPO loss (Wallace et al. 2024), as in the reference implementation.

Winner and loser share the timestep and the noise. With per-sample denoising errors
``mse_w, mse_l`` under the policy and ``ref_w, ref_l`` under the frozen reference::

    inside = -0.5 * beta * ((mse_w - mse_l) - (ref_w - ref_l))
    loss   = -log σ(inside)

``inside`` equals r(x_w) − r(x_l) for SAIL's implicit reward r(x) = −β/2·(‖ε−ε_θ‖² − ‖ε−ε_ref‖²)
(:mod:`sail_core.algorithm.reward`), so the training loss and the self-reward are one quantity. When the
policy equals the reference the loss is exactly log 2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DpoTerms:
    loss: torch.Tensor
    """Scalar mean loss (differentiable)."""
    inside: torch.Tensor
    """[B] implicit reward margins r(x_w) − r(x_l) (detached)."""
    implicit_accuracy: torch.Tensor
    """Fraction of pairs with a positive margin: the policy prefers the winner more than the reference does."""
    model_mse: torch.Tensor
    ref_mse: torch.Tensor


def dpo_loss(mse_w: torch.Tensor, mse_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
             beta: float) -> DpoTerms:
    inside = -0.5 * beta * ((mse_w - mse_l) - (ref_w.detach() - ref_l.detach()))
    loss = -F.logsigmoid(inside).mean()
    margin = inside.detach()
    return DpoTerms(
        loss=loss,
        inside=margin,
        implicit_accuracy=(margin > 0).float().mean(),
        model_mse=torch.cat([mse_w, mse_l]).detach().mean(),
        ref_mse=torch.cat([ref_w, ref_l]).detach().mean(),
    )
