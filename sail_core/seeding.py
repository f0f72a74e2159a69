"""Deterministic seeds derived from names, so every random draw is reproducible on its own.

A sample's noise depends only on (run seed, stage, round, prompt, candidate), never on batch
composition or on how many samples came before it; a resumed stage therefore regenerates exactly
what an uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any sequence of printable parts."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(*parts: object) -> torch.Generator:
    import torch  # here, so that code needing only derive_seed (e.g. mixup, on a data machine) needs no torch

    return torch.Generator("cpu").manual_seed(derive_seed(*parts))
