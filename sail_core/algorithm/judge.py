"""Which model is the self-reward's reference (the "judge anchor"), per ``reward.reference``.

The models of a run are ``models[0]``, the pretrained base; ``models[1]``, the iteration-0 model
(seed DPO); ``models[i + 1]``, the model after round i. Round i generates and judges with
``models[i]``:

* ``base`` (default): r = β·log π_i/π_base, everything the model learned since pretraining,
  human seed included. Section 4 of the paper calls the pretrained model ε⁰ and ranks "with εⁱ
  and ε⁰"; and in round 1, where policy = iteration-0 model, it is the only non-trivial choice.
* ``iter0``: r = β·log π_i/π_iter0, only what self-training added. In round 1 the policy *is* the
  iteration-0 model and the reward would be identically 0, so round 1 uses the base.
* ``previous``: r = β·log π_i/π_{i−1}, the implicit reward of the last DPO update exactly
  (the reference the current policy was trained against).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

JudgeReference = Literal["base", "iter0", "previous"]
M = TypeVar("M")


def judge_reference(option: JudgeReference, round_index: int, models: Sequence[M]) -> M:
    if round_index < 1 or len(models) < round_index + 1:
        raise ValueError(f"round {round_index} needs models[0..{round_index}], got {len(models)}")
    if option == "base":
        return models[0]
    if option == "iter0":
        return models[1] if round_index > 1 else models[0]
    if option == "previous":
        return models[round_index - 1]
    raise ValueError(f"unknown judge reference {option!r}")
