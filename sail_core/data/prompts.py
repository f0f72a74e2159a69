"""Prompt files and per-round prompt sets, with the rule that rounds never reuse a prompt."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from sail_core.errors import InputError
from sail_core.io.tables import read_table
from sail_core.seeding import derive_seed

PROMPT_COLUMNS = ("prompt", "caption", "Prompt", "text")


def normalize_prompt(prompt: str) -> str:
    """The identity of a prompt for disjointness checks: case and whitespace do not make a new prompt."""
    return " ".join(prompt.split()).casefold()


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a text file (one per line; blank lines skipped), a TSV/CSV with a ``Prompt``
    column, or a Parquet file with a ``prompt``/``caption``/``Prompt``/``text`` column."""
    path = Path(path)
    if not path.exists():
        raise InputError("prompt file does not exist", file=path)
    if path.suffix == ".parquet":
        names = pq.read_schema(path).names
        column = next((c for c in PROMPT_COLUMNS if c in names), None)
        if column is None:
            raise InputError(f"no prompt column (looked for {PROMPT_COLUMNS}; found {names})",
                             file=path, column="prompt")
        prompts = read_table(path, columns=[column]).column(column).to_pylist()
        for row, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise InputError("empty prompt", file=path, row=row, column=column)
    elif path.suffix in (".tsv", ".csv"):
        import csv

        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ",")
            column = next((c for c in PROMPT_COLUMNS if c in (reader.fieldnames or [])), None)
            if column is None:
                raise InputError(f"no prompt column (found {reader.fieldnames})", file=path, column="Prompt")
            prompts = [row[column] for row in reader]
        for row, prompt in enumerate(prompts):
            if not prompt or not prompt.strip():
                raise InputError("empty prompt", file=path, row=row, column=column)
    else:
        prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise InputError("the prompt set is empty", file=path)
    return prompts


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
