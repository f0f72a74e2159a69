"""The paper's evaluation prompt sets, read from their published file formats (offline: local files).

* Pick-a-Pic v2 ``validation_unique`` (500 prompts): the Hugging Face dataset's Parquet shards
  (``yuvalkirstain/pickapic_v2`` or ``..._no_images``: ``data/validation_unique-00000-of-00001-*.parquet``,
  or the parquet-converter's ``validation_unique/0000.parquet``), column ``caption``; one row per
  prompt by construction of the split.
* PartiPrompts (1,632 prompts): google-research/parti ``PartiPrompts.tsv`` (header
  ``Prompt	Category	Challenge	Note``; fields are never quoted, and one prompt begins with a double
  quote, so the file is split on tabs, not parsed as quoted CSV), or its Hugging Face Parquet form
  (``nateraw/parti-prompts``: the same four columns).
* HPSv2 benchmark (3,200 prompts): ``anime.json``, ``concept-art.json``, ``paintings.json`` and
  ``photo.json`` (800 each; JSON lists of strings) from the ``benchmark/`` folder of the Hugging
  Face dataset ``zhwang/HPDv2``, which ``hpsv2.benchmark_prompts`` downloads; the category is the
  style. The saved output of ``hpsv2.benchmark_prompts('all')`` (one JSON object, style -> list)
  is read too.
* Plain text: one prompt per line.

No installable package ships these files (the ``hpsv2`` and ``image-reward`` wheels do not), so
they are read from where the user put them. Prompts are kept verbatim (only text files are
stripped, line by line); order is the file's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from sail_core.errors import InputError
from sail_core.io.paths import local_path

PICKAPIC = "pickapic_v2_validation_unique"
PARTIPROMPTS = "partiprompts"
HPSV2 = "hpsv2_benchmark"
TEXT = "text"
EXPECTED_SIZES = {PICKAPIC: 500, PARTIPROMPTS: 1632, HPSV2: 3200}
HPSV2_STYLES = ("anime", "concept-art", "paintings", "photo")
PARTI_COLUMNS = ("Prompt", "Category", "Challenge", "Note")


@dataclass(frozen=True)
class PromptSet:
    name: str
    prompts: tuple[str, ...]
    categories: tuple[str, ...] | None
    source: Path
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Other per-prompt columns (PartiPrompts: ``challenge``, ``note``)."""

    def __post_init__(self) -> None:
        if not self.prompts:
            raise InputError("the prompt set is empty", file=self.source)
        for column, values in (("category", self.categories), *self.attributes.items()):
            if values is not None and len(values) != len(self.prompts):
                raise InputError(f"{len(values)} {column} values for {len(self.prompts)} prompts", file=self.source)

    def __len__(self) -> int:
        return len(self.prompts)


def _existing(path: str | Path) -> Path:
    resolved = Path(local_path(path))
    if not resolved.exists():
        raise InputError("prompt file or folder does not exist", file=path)
    return resolved


def _check_prompts(prompts: Sequence[object], file: Path, column: str | None, first_row: int = 0) -> list[str]:
    out = []
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError("empty prompt" if isinstance(prompt, str) or prompt is None
                             else f"prompt is a {type(prompt).__name__}, not text",
                             file=file, row=first_row + index, column=column)
        out.append(prompt)
    return out


def _parquet_column(path: Path, column: str) -> list[object]:
    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for non-Parquet files
        raise InputError(f"not a readable Parquet file ({exc})", file=path) from exc
    if column not in names:
        raise InputError(f"no {column!r} column (found {names})", file=path, column=column)
    return pq.read_table(path, columns=[column]).column(column).to_pylist()


def load_text_prompts(path: str | Path, name: str | None = None) -> PromptSet:
    """One prompt per line; blank lines are skipped, surrounding whitespace removed."""
    path = _existing(path)
    if path.is_dir():
        raise InputError("expected a text file, got a folder", file=path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc})", file=path) from exc
    prompts = [line.strip() for line in lines if line.strip()]
    return PromptSet(name or path.stem, tuple(prompts), None, path)


def _pickapic_shards(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    shards = sorted(path.rglob("validation_unique-*.parquet")) or sorted(path.rglob("validation_unique/*.parquet"))
    if not shards:
        raise InputError("folder holds no validation_unique Parquet shard (validation_unique-*.parquet)", file=path)
    return shards


def load_pickapic_validation_unique(path: str | Path) -> PromptSet:
    """Captions of Pick-a-Pic v2 ``validation_unique``: a Parquet shard, or a folder of shards."""
    path = _existing(path)
    prompts: list[str] = []
    for shard in _pickapic_shards(path):
        prompts += _check_prompts(_parquet_column(shard, "caption"), shard, "caption")
    return PromptSet(PICKAPIC, tuple(prompts), None, path)


def _parti_rows_tsv(path: Path) -> dict[str, list[str]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise InputError("the prompt set is empty", file=path)
    header = lines[0].rstrip("\r").split("\t")
    if "Prompt" not in header:
        raise InputError(f"no 'Prompt' column in the header {header}", file=path, column="Prompt")
    columns: dict[str, list[str]] = {name: [] for name in header}
    for row, line in enumerate(lines[1:], start=1):
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(header):
            raise InputError(f"{len(fields)} tab-separated fields, the header has {len(header)}", file=path, row=row)
        for name, value in zip(header, fields):
            columns[name].append(value)
    return columns


def _parti_rows_parquet(path: Path) -> dict[str, list[str]]:
    names = pq.read_schema(path).names
    if "Prompt" not in names:
        raise InputError(f"no 'Prompt' column (found {names})", file=path, column="Prompt")
    table = pq.read_table(path, columns=[c for c in PARTI_COLUMNS if c in names])
    return {name: ["" if v is None else v for v in table.column(name).to_pylist()] if name != "Prompt"
            else table.column(name).to_pylist() for name in table.column_names}


def load_partiprompts(path: str | Path) -> PromptSet:
    """PartiPrompts from ``PartiPrompts.tsv``, its Parquet form, or a folder holding either."""
    path = _existing(path)
    file = path
    if path.is_dir():
        candidates = [path / "PartiPrompts.tsv", *sorted(path.rglob("*.parquet"))]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            raise InputError("folder holds neither PartiPrompts.tsv nor a Parquet file", file=path)
    try:
        columns = _parti_rows_parquet(file) if file.suffix == ".parquet" else _parti_rows_tsv(file)
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc})", file=file) from exc
    prompts = _check_prompts(columns["Prompt"], file, "Prompt", first_row=1 if file.suffix != ".parquet" else 0)
    categories = tuple(columns["Category"]) if "Category" in columns else None
    attributes = {key.lower(): tuple(columns[key]) for key in ("Challenge", "Note") if key in columns}
    return PromptSet(PARTIPROMPTS, tuple(prompts), categories, file, attributes)


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON ({exc})", file=path) from exc


def _style_prompts(value: object, file: Path, style: str) -> list[str]:
    if not isinstance(value, list):
        raise InputError(f"style {style!r} must be a JSON list of prompts, not {type(value).__name__}", file=file,
                         column=style)
    return _check_prompts(value, file, style)


def load_hpsv2_benchmark(path: str | Path, styles: Sequence[str] = HPSV2_STYLES) -> PromptSet:
    """HPSv2 benchmark prompts: a folder with ``<style>.json`` files (or their ``benchmark/``
    parent), one ``<style>.json`` file, or one JSON object mapping style -> prompts."""
    path = _existing(path)
    per_style: list[tuple[str, list[str], Path]] = []
    if path.is_dir():
        folder = path / "benchmark" if (path / "benchmark" / f"{styles[0]}.json").is_file() else path
        for style in styles:
            file = folder / f"{style}.json"
            if not file.is_file():
                raise InputError(f"missing HPSv2 benchmark file {file.name}", file=file)
            per_style.append((style, _style_prompts(_read_json(file), file, style), file))
    else:
        data = _read_json(path)
        if isinstance(data, list):
            per_style.append((path.stem, _style_prompts(data, path, path.stem), path))
        elif isinstance(data, dict):
            missing = [s for s in styles if s not in data]
            if missing:
                raise InputError(f"no prompts for style(s) {missing} (found {sorted(data)})", file=path,
                                 column=missing[0])
            per_style += [(style, _style_prompts(data[style], path, style), path) for style in styles]
        else:
            raise InputError(f"expected a JSON list or object, got {type(data).__name__}", file=path)
    prompts = [p for _, items, _ in per_style for p in items]
    categories = [style for style, items, _ in per_style for _ in items]
    return PromptSet(HPSV2, tuple(prompts), tuple(categories), path)


LOADERS = {
    PICKAPIC: load_pickapic_validation_unique,
    PARTIPROMPTS: load_partiprompts,
    HPSV2: load_hpsv2_benchmark,
    TEXT: load_text_prompts,
}


def load_prompt_set(kind: str, path: str | Path) -> PromptSet:
    """``kind``: one of ``LOADERS`` (pickapic_v2_validation_unique, partiprompts, hpsv2_benchmark, text)."""
    if kind not in LOADERS:
        raise InputError(f"unknown prompt set {kind!r}; choose one of {sorted(LOADERS)}", parameter="kind")
    return LOADERS[kind](path)


GENERIC_PARQUET_COLUMNS = ("prompt", "caption", "Prompt", "text")


def load_parquet_prompts(path: str | Path) -> PromptSet:
    """A Parquet file with a ``prompt``, ``caption``, ``Prompt`` or ``text`` column (the first found)."""
    path = _existing(path)
    try:
        names = pq.read_schema(path).names
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for non-Parquet files
        raise InputError(f"not a readable Parquet file ({exc})", file=path) from exc
    column = next((c for c in GENERIC_PARQUET_COLUMNS if c in names), None)
    if column is None:
        raise InputError(f"no prompt column (looked for {GENERIC_PARQUET_COLUMNS}; found {names})", file=path,
                         column="prompt")
    return PromptSet(path.stem, tuple(_check_prompts(_parquet_column(path, column), path, column)), None, path)


def infer_prompt_set(path: str | Path) -> PromptSet:
    """Load a prompt file or folder, telling its format from its name and content: the HPSv2 benchmark
    (``.json`` or a folder of style files), PartiPrompts (``.tsv`` or a folder with it), Pick-a-Pic
    ``validation_unique`` shards (a folder), a Parquet prompt column, or a text file."""
    path = _existing(path)
    if path.is_dir():
        if (path / f"{HPSV2_STYLES[0]}.json").is_file() or (path / "benchmark").is_dir():
            return load_hpsv2_benchmark(path)
        if (path / "PartiPrompts.tsv").is_file():
            return load_partiprompts(path)
        return load_pickapic_validation_unique(path)
    if path.suffix == ".json":
        return load_hpsv2_benchmark(path)
    if path.suffix == ".tsv":
        return load_partiprompts(path)
    if path.suffix == ".parquet":
        return load_parquet_prompts(path)
    return load_text_prompts(path)


def prompt_set_from_spec(spec: str) -> PromptSet:
    """``"<kind>:<path>"`` (a kind of ``LOADERS``) or a plain path (format inferred)."""
    kind, _, rest = spec.partition(":")
    if rest and kind in LOADERS:
        return load_prompt_set(kind, rest)
    return infer_prompt_set(spec)
