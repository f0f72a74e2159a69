"""Ranked-preference mixup (paper §4.2): a round trains on a fraction α of self pairs and the rest
human seed pairs. The same mechanism mixes any weighted set of sources (e.g. real-image anchors).

The paper gives the fraction, not the size. ``MixupConfig.size`` chooses it:

* ``self_all`` (default): keep every self pair (each cost N generations and 2·N·K UNet passes to
  make); the other sources fill the rest so that self pairs are the fraction α of the set;
* ``seed_size``: the mixed set is as large as the human seed set;
* ``real_all``: like ``self_all`` for the real-image anchors (RealAlign): of the real sources with a
  positive fraction, the one with the most pairs per unit of fraction is kept whole, so no real pair is
  left out (the pure-RealAlign setting: alpha = 0, no human pairs);
* an integer M: a set of M pairs.

Counts are exact: the largest-remainder rule makes them sum to the size. A source asked for more
pairs than it has is drawn again in a new seeded order (each pair is then used ⌊k⌋ or ⌈k⌉ times);
within a source, pairs are drawn without replacement in a seeded order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from sail_core.config import MixupConfig
from sail_core.data.pairs import SOURCE_HUMAN, SOURCE_REAL_GENERATED, SOURCE_REAL_PERTURBED, SOURCE_SELF
from sail_core.errors import InputError
from sail_core.seeding import derive_seed

SELF, HUMAN = SOURCE_SELF, SOURCE_HUMAN
REAL_SOURCES = (SOURCE_REAL_GENERATED, SOURCE_REAL_PERTURBED)


def plan_mix(available: Mapping[str, int], fractions: Mapping[str, float], size: str | int) -> dict[str, int]:
    """How many pairs to take from each source."""
    fractions = {s: f for s, f in fractions.items() if f > 0}
    if not fractions or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-9):
        raise InputError(f"mixup fractions {dict(fractions)} must be non-negative and sum to 1",
                         parameter="mixup")
    for source in fractions:
        if not available.get(source):
            raise InputError(f"mixup asks for {source!r} pairs but there are none", parameter="mixup")
    if size in ("self_all", "real_all"):
        kept = [s for s in ((SELF,) if size == "self_all" else REAL_SOURCES) if s in fractions]
        if not kept:
            need = "self fraction (alpha)" if size == "self_all" else "real_generated or real_perturbed fraction"
            raise InputError(f"size={size!r} needs a positive {need}", parameter="mixup.size")
        # the kept source that needs the largest set to be used whole fixes the size
        anchor = max(kept, key=lambda s: (available[s] / fractions[s], s))
        n_anchor = available[anchor]
        total = round(n_anchor / fractions[anchor])
        rest = {s: f for s, f in fractions.items() if s != anchor}
        counts = _largest_remainder(rest, total - n_anchor) if rest else {}
        return {anchor: n_anchor, **counts}
    total = available.get(HUMAN, 0) if size == "seed_size" else int(size)
    if total <= 0:
        raise InputError(f"mixed set size {size!r} gives {total} pairs", parameter="mixup.size")
    return _largest_remainder(fractions, total)


def _largest_remainder(fractions: Mapping[str, float], total: int) -> dict[str, int]:
    norm = sum(fractions.values())
    exact = {s: total * f / norm for s, f in fractions.items()}
    counts = {s: math.floor(v) for s, v in exact.items()}
    for source in sorted(exact, key=lambda s: (counts[s] - exact[s], s))[: total - sum(counts.values())]:
        counts[source] += 1
    return counts


def draw_rows(n_available: int, n: int, *seed_parts: object) -> np.ndarray:
    """``n`` row indices of ``range(n_available)``: seeded permutations, concatenated as needed."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    passes = -(-n // n_available)
    orders = [np.random.default_rng(derive_seed("mixup", *seed_parts, p)).permutation(n_available)
              for p in range(passes)]
    return np.concatenate(orders)[:n]


def mixup_fractions(config: MixupConfig) -> dict[str, float]:
    """Fraction of each source; sources at 0 are left out of the mix (and need no pairs)."""
    human = 1.0 - config.alpha - config.real_generated - config.real_perturbed
    # 1 − 0.25 − 0.25 − 0.5 is 5.6e-17 in floats, which must not demand human pairs
    human = 0.0 if human < 1e-9 else human
    return {SELF: config.alpha, HUMAN: human, SOURCE_REAL_GENERATED: config.real_generated,
            SOURCE_REAL_PERTURBED: config.real_perturbed}


def mix_pairs(tables: Mapping[str, pa.Table], fractions: Mapping[str, float], size: str | int,
              *seed_parts: object) -> pa.Table:
    """The round's training set: rows of each source table in the planned numbers (the tables share
    the pair schema, whose ``source`` column tells the rows apart)."""
    counts = plan_mix({s: t.num_rows for s, t in tables.items()}, fractions, size)
    parts = [tables[s].take(draw_rows(tables[s].num_rows, n, s, *seed_parts))
             for s, n in sorted(counts.items()) if n]
    return pa.concat_tables(parts)
