"""Telling a diverging Diffusion-DPO run early, and which of its step checkpoints can still be trusted.

A non-finite loss comes late: at learning rate 1e6 the loss is still finite at step 2 while the
weights are already ~10⁵. Three checks catch it earlier, each against the run's own history:

* before step ``s`` updates the weights: its loss and gradient norm (computed on the weights of step
  ``s − 1``) are finite, the loss is at most ``loss_spike`` × its running median (never measured
  against less than ln 2, the loss of a policy equal to its reference, where every run starts), and
  the gradient norm at most ``grad_spike`` × its running median;
* after the update: the trainable weights' norm is finite and at most ``weight_growth`` × its value
  when training started (fine-tuning moves weights by a fraction of a percent per step).

Which checkpoint is trusted: the weights of step ``k`` are first *used* by step ``k + 1``, so a
checkpoint is trusted once step ``k + 1`` passed the first check on them (and the last step's, once
the weight check passed). When step ``s`` fails the first check, the weights it ran on (step ``s − 1``)
are suspect, so the checkpoints of steps ≥ ``s − 1`` are set aside and the newest of steps ≤ ``s − 2``
is kept; when the weight check fails after step ``s``, checkpoints of steps ≥ ``s`` are set aside.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

LOSS_FLOOR = math.log(2)
"""The DPO loss of a policy equal to its reference: spikes are measured against at least this."""


@dataclass(frozen=True)
class Divergence:
    step: int
    reason: str
    weights_of_step: int
    """The step whose weights are suspect: ``step − 1`` for a bad loss or gradient, ``step`` for bad weights."""


@dataclass
class DivergenceGuard:
    loss_spike: float | None = 10.0
    grad_spike: float | None = 100.0
    weight_growth: float | None = 10.0
    window: int = 50
    losses: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    initial_weight_norm: float | None = None
    """The trainable weights' norm before the first step (the init's, also when resuming)."""

    def resume(self, history: Iterable[dict[str, float]]) -> None:
        """The medians continue from a checkpoint's metrics, as an uninterrupted run's would."""
        for metrics in history:
            self.losses.append(metrics["loss"])
            if "grad_norm" in metrics:
                self.grad_norms.append(metrics["grad_norm"])

    def check_step(self, step: int, loss: float, grad_norm: float | None) -> Divergence | None:
        """Before step ``step``'s update: its loss and gradient, computed on the weights of ``step − 1``.
        ``grad_norm`` None: not judged (an fp16 loss-scale overflow, which the scaler skips by design)."""
        suspect = step - 1
        if not math.isfinite(loss):
            return Divergence(step, f"non-finite DPO loss ({loss})", suspect)
        if grad_norm is None:
            self.losses.append(loss)
            return None
        if not math.isfinite(grad_norm):
            return Divergence(step, f"non-finite gradient norm ({grad_norm})", suspect)
        if self.loss_spike is not None and self.losses:
            median = max(statistics.median(self.losses[-self.window:]), LOSS_FLOOR)
            if loss > self.loss_spike * median:
                return Divergence(step, f"loss {loss:.4g} is over {self.loss_spike:g}× its running median "
                                        f"({median:.4g})", suspect)
        if self.grad_spike is not None and self.grad_norms:
            median = statistics.median(self.grad_norms[-self.window:])
            if grad_norm > self.grad_spike * median:
                return Divergence(step, f"gradient norm {grad_norm:.4g} is over {self.grad_spike:g}× its "
                                        f"running median ({median:.4g})", suspect)
        self.losses.append(loss)
        self.grad_norms.append(grad_norm)
        return None

    def check_weights(self, step: int, weight_norm: float) -> Divergence | None:
        """After step ``step``'s update: the weights it produced."""
        if not math.isfinite(weight_norm):
            return Divergence(step, f"non-finite weights after the update (norm {weight_norm})", step)
        if self.weight_growth is None or self.initial_weight_norm is None:
            return None
        if weight_norm > self.weight_growth * self.initial_weight_norm:
            return Divergence(step, f"the trainable weights' norm grew to {weight_norm:.4g}, over "
                                    f"{self.weight_growth:g}× its {self.initial_weight_norm:.4g} at the start", step)
        return None


def weight_norm(parameters: Iterable[torch.nn.Parameter]) -> float:
    """L2 norm of all trainable weights together (one device sync)."""
    norms = [torch.linalg.vector_norm(p.detach(), dtype=torch.float32) for p in parameters]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0
