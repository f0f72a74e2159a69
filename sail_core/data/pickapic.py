"""Reading human preference pairs in the published Pick-a-Pic v2 Parquet schema.

Only ``caption, jpg_0, jpg_1, label_0, label_1`` are required (``has_label`` is honoured when
present). Labels are validated row by row; ties (label 0.5/0.5) are dropped, as in Diffusion-DPO and
the paper. Images are read only for the rows that are kept, one row group at a time.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sail_core.data.prompts import normalize_prompt
from sail_core.errors import InputError
from sail_core.io.paths import local_path
from sail_core.io.tables import read_schema, read_table
from sail_core.seeding import derive_seed

REQUIRED_COLUMNS = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")
PICKAPIC_V2_SCHEMA = pa.schema([
    ("are_different", pa.bool_()), ("best_image_uid", pa.string()), ("caption", pa.string()),
    ("created_at", pa.timestamp("ns")), ("has_label", pa.bool_()), ("image_0_uid", pa.string()),
    ("image_0_url", pa.string()), ("image_1_uid", pa.string()), ("image_1_url", pa.string()),
    ("jpg_0", pa.binary()), ("jpg_1", pa.binary()), ("label_0", pa.float64()), ("label_1", pa.float64()),
    ("model_0", pa.string()), ("model_1", pa.string()), ("ranking_id", pa.int64()), ("user_id", pa.int64()),
    ("num_example_per_prompt", pa.int64()), ("__index_level_0__", pa.int64()),
])
"""The published schema of ``yuvalkirstain/pickapic_v2`` (its dataset card's features)."""
LABEL_COLUMNS = ("caption", "label_0", "label_1")


@dataclass(frozen=True)
class LabelledPair:
    file: str
    row: int
    caption: str
    winner: int
    """0 if jpg_0 is preferred, 1 if jpg_1 is."""


@dataclass(frozen=True)
class SeedSplit:
    seed: list[LabelledPair]
    """The seed subset, in the deterministic draw order."""
    pool: list[str]
    """Captions of every other row whose prompt is not in the seed set (deduplicated, file order):
    the prompts the rounds draw from."""
    n_rows: int
    n_ties: int
    n_unlabelled: int
    n_pool_in_seed: int = 0
    """Rows left out of the pool because their prompt is a seed pair's (other than the seed rows themselves)."""
    n_pool_duplicates: int = 0
    """Rows left out of the pool because their prompt was already in it."""


def expand_files(patterns: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(local_path(pattern)))
        if not matches:
            raise InputError("no file matches", file=pattern, parameter="seed_data.pairs")
        files.extend(Path(m) for m in matches)
    return files


def _winner(label_0: object, label_1: object, file: Path, row: int) -> int | None:
    """0/1 for a decided pair, None for a tie; anything else is a broken row."""
    for name, value in (("label_0", label_0), ("label_1", label_1)):
        if value is None or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise InputError(f"label is {value!r}, expected 0, 0.5 or 1", file=file, row=row, column=name)
    pair = (float(label_0), float(label_1))  # type: ignore[arg-type]
    if pair == (1.0, 0.0):
        return 0
    if pair == (0.0, 1.0):
        return 1
    if pair == (0.5, 0.5):
        return None
    raise InputError(f"labels {pair} are not a preference (1,0), (0,1) or a tie (0.5,0.5)",
                     file=file, row=row, column="label_0")


def scan_labels(files: Sequence[Path]) -> tuple[list[LabelledPair], list[tuple[str, int, str]], int, int]:
    """Decided pairs, plus (file, row, caption) of every row, plus counts of ties and unlabelled rows."""
    decided: list[LabelledPair] = []
    every: list[tuple[str, int, str]] = []
    ties = unlabelled = 0
    for file in files:
        schema_names = read_schema(file).names
        columns = list(LABEL_COLUMNS) + (["has_label"] if "has_label" in schema_names else [])
        table = read_table(file, columns=columns, required=REQUIRED_COLUMNS).to_pydict()
        has_label = table.get("has_label", [True] * len(table["caption"]))
        for row, (caption, l0, l1, labelled) in enumerate(
                zip(table["caption"], table["label_0"], table["label_1"], has_label)):
            if not isinstance(caption, str) or not caption.strip():
                raise InputError("caption is missing or empty", file=file, row=row, column="caption")
            every.append((str(file), row, caption))
            if labelled is False:
                unlabelled += 1
                continue
            winner = _winner(l0, l1, file, row)
            if winner is None:
                ties += 1
            else:
                decided.append(LabelledPair(str(file), row, caption, winner))
    return decided, every, ties, unlabelled


def split_seed(files: Sequence[Path], seed_size: int, seed: int) -> SeedSplit:
    """A deterministic random seed subset of ``seed_size`` decided pairs, and the remaining prompts."""
    decided, every, ties, unlabelled = scan_labels(files)
    if len(decided) < seed_size:
        raise InputError(f"asked for {seed_size} seed pairs but the files hold only {len(decided)} "
                         f"decided (non-tie) pairs", parameter="seed_data.seed_size")
    order = np.random.default_rng(derive_seed("seed-subset", seed)).permutation(len(decided))
    chosen = [decided[i] for i in order[:seed_size]]
    seed_prompts = {normalize_prompt(p.caption) for p in chosen}
    chosen_keys = {(p.file, p.row) for p in chosen}
    pool: list[str] = []
    seen: set[str] = set()
    in_seed = duplicates = 0
    for file, row, caption in every:
        key = normalize_prompt(caption)
        if (file, row) in chosen_keys:
            continue
        if key in seed_prompts or key in seen:
            in_seed += key in seed_prompts
            duplicates += key not in seed_prompts
            continue
        seen.add(key)
        pool.append(caption)
    return SeedSplit(chosen, pool, len(every), ties, unlabelled, in_seed, duplicates)


def read_pair_images(pairs: Sequence[LabelledPair]) -> Iterator[tuple[LabelledPair, bytes, bytes]]:
    """(pair, winner bytes, loser bytes) in the order given, reading each row group once."""
    by_file: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        by_file.setdefault(pair.file, []).append(i)
    loaded: dict[int, tuple[bytes, bytes]] = {}
    next_out = 0
    for file, positions in by_file.items():
        parquet = pq.ParquetFile(file)
        bounds = np.cumsum([0] + [parquet.metadata.row_group(g).num_rows for g in range(parquet.num_row_groups)])
        by_group: dict[int, list[int]] = {}
        for position in positions:
            group = int(np.searchsorted(bounds, pairs[position].row, side="right") - 1)
            by_group.setdefault(group, []).append(position)
        for group in sorted(by_group):
            block = parquet.read_row_group(group, columns=["jpg_0", "jpg_1"]).to_pydict()
            for position in by_group[group]:
                pair = pairs[position]
                local = pair.row - int(bounds[group])
                images = (block["jpg_0"][local], block["jpg_1"][local])
                for column, data in zip(("jpg_0", "jpg_1"), images):
                    if not data:
                        raise InputError("image bytes are missing", file=file, row=pair.row, column=column)
                loaded[position] = (images[pair.winner], images[1 - pair.winner])
            # yield in the requested order as soon as the next pairs are available
            while next_out in loaded:
                winner, loser = loaded.pop(next_out)
                yield pairs[next_out], winner, loser
                next_out += 1
    while next_out in loaded:
        winner, loser = loaded.pop(next_out)
        yield pairs[next_out], winner, loser
        next_out += 1
