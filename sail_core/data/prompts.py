"""Prompt files and per-round prompt sets, with the rule that rounds never reuse a prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from sail_core.data.prompt_sets import infer_prompt_set
from sail_core.errors import InputError
from sail_core.seeding import derive_seed


def normalize_prompt(prompt: str) -> str:
    """The identity of a prompt for disjointness checks: case and whitespace do not make a new prompt."""
    return " ".join(prompt.split()).casefold()


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts of a file in any supported format (see :func:`sail_core.data.prompt_sets.infer_prompt_set`)."""
    return list(infer_prompt_set(path).prompts)


def unique_prompts(prompts: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for prompt in prompts:
        key = normalize_prompt(prompt)
        if key not in seen:
            seen.add(key)
            out.append(prompt)
    return out


def round_slices(pool: Sequence[str], per_round: Sequence[int], seed: int) -> list[list[str]]:
    """Disjoint prompt sets for rounds 1..R: consecutive slices of one seeded shuffle of the pool."""
    pool = unique_prompts(pool)
    needed = sum(per_round)
    if needed > len(pool):
        raise InputError(f"the rounds need {needed} distinct prompts but the pool has {len(pool)}",
                         parameter="prompts.per_round")
    order = np.random.default_rng(derive_seed("round-prompts", seed)).permutation(len(pool))
    out, start = [], 0
    for count in per_round:
        out.append([pool[i] for i in order[start : start + count]])
        start += count
    return out


def check_disjoint(prompts: Sequence[str], earlier: Mapping[str, Sequence[str]], new_file: str | Path) -> None:
    """Raise naming the row and the earlier set when a prompt was already used (Y_i ∩ Y_j = ∅)."""
    used = {}
    for label, earlier_prompts in earlier.items():
        for prompt in earlier_prompts:
            used.setdefault(normalize_prompt(prompt), label)
    for row, prompt in enumerate(prompts):
        label = used.get(normalize_prompt(prompt))
        if label is not None:
            raise InputError(f"prompt {prompt!r} was already used by {label}; rounds' prompt sets must be disjoint",
                             file=new_file, row=row, column="prompt")
