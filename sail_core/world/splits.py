"""The world's prompt splits: test prompts that report results, tuning prompts that choose
hyperparameters, and the labelled rest.

Test and tuning prompts are balanced over the attributes. The optional attributes form 72 cells
(position or unsaid × size or unsaid × background or unsaid) and every cell holds the same number
of test (and of tuning) prompts; their colour, shape and count come from the 36 (colour, shape,
count) triples, assigned so that each triple appears equally often and no cell gets the same
triple twice. The test file is written copy by copy (one prompt per cell, then the next), so every
prefix of 72 prompts is balanced too and a shorter evaluation (``eval.max_prompts``) stays balanced.

Nothing here depends on anything but the seed and this code, so the split is reproducible; the
labels, the real images and the evaluation all read it from here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from sail_core.errors import InputError
from sail_core.seeding import derive_seed
from sail_core.world.grammar import BACKGROUNDS, COLOURS, COUNTS, POSITIONS, SHAPES, SIZES, PromptSpec, all_specs

CELLS: tuple[tuple[str | None, str | None, str | None], ...] = tuple(
    itertools.product((None, *POSITIONS), (None, *SIZES), (None, *BACKGROUNDS)))
TRIPLES: tuple[tuple[str, str, int], ...] = tuple(itertools.product(COLOURS, SHAPES, COUNTS))
# Copies of a cell take triples this far apart; coprime with 36, so up to 36 copies never repeat one.
_TRIPLE_STRIDE = 7


@dataclass(frozen=True)
class PromptSplit:
    test: tuple[str, ...]
    """Held-out prompts that report results (never labelled, never tuned on)."""
    tune: tuple[str, ...]
    """Held-out prompts for choosing hyperparameters (never labelled, never reported)."""
    labelled: tuple[str, ...]
    """Every other prompt of the grammar, in the grammar's order."""


def split_prompts(test_per_cell: int = 4, tune_per_cell: int = 2, seed: int = 0) -> PromptSplit:
    """The seeded split: ``72 · test_per_cell`` test and ``72 · tune_per_cell`` tuning prompts."""
    copies = test_per_cell + tune_per_cell
    if test_per_cell < 1 or tune_per_cell < 0 or copies > len(TRIPLES):
        raise InputError(f"need 1 <= test_per_cell and 0 <= tune_per_cell with a sum <= {len(TRIPLES)}, got "
                         f"{test_per_cell} and {tune_per_cell}", parameter="test_per_cell")
    rng = np.random.default_rng(derive_seed("world-prompt-split", seed))
    cells = rng.permutation(len(CELLS))
    triples = rng.permutation(len(TRIPLES))
    rows: list[list[str]] = []
    for copy in range(copies):
        row = []
        for rank, cell in enumerate(cells):
            colour, shape, count = TRIPLES[triples[(rank + copy * _TRIPLE_STRIDE) % len(TRIPLES)]]
            position, size, background = CELLS[cell]
            row.append(PromptSpec(colour, shape, count, position, size, background).text())
        rows.append(row)
    test = tuple(p for row in rows[:test_per_cell] for p in row)
    tune = tuple(p for row in rows[test_per_cell:] for p in row)
    held_out = set(test) | set(tune)
    labelled = tuple(s.text() for s in all_specs() if s.text() not in held_out)
    return PromptSplit(test, tune, labelled)
