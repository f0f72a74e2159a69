"""Reading real (image, caption) data: the preferred side of RealAlign's pairs.

Accepted sources (a path or a glob each; matches are taken in sorted order):

* a **folder** of images (``.jpg .jpeg .png .webp .bmp``) with its captions in

  - ``metadata.jsonl`` or ``captions.jsonl``: one JSON object per line with ``file_name`` (or
    ``file``; relative to the folder) and ``caption`` (or ``text``) — the Hugging Face ImageFolder
    layout; rows are 0-based line numbers;
  - ``captions.csv``: a header with ``file_name`` (or ``file``) and ``caption`` (or ``text``); rows
    are 0-based data rows;
  - otherwise one ``<image stem>.txt`` beside each image (images in sorted name order).

  With a captions file only the listed images are used, in the file's order.
* a **Parquet** file: one row per image, an image column (``image``: bytes or a Hugging Face
  ``{bytes, path}`` struct; or ``jpg``, ``png``, ``webp``, ``image_bytes``) and a caption column
  (``caption``, ``text``, ``txt`` or ``prompt``); the first present name is used unless
  ``image_column``/``caption_column`` name one. img2dataset's Parquet output has this form.
* a **WebDataset** ``.tar`` shard: samples ``<key>.<ext>`` grouped by key (the member path up to the
  first dot of its file name), an image member (``jpg``, ``jpeg``, ``png``, ``webp``) and the caption
  in ``<key>.txt`` or in ``caption``/``text`` of ``<key>.json``; rows are 0-based sample indices.
* ``pkg:<package>/<path>``: any of these shipped inside a Python package (the embedded world's real
  images are ``pkg:sail_core.world/data/real.parquet``, a Parquet file of the form above).

Only captions are read to list the images; image bytes are read later, in the order asked for.
Every error names the file, and the row and column where there is one.
"""

from __future__ import annotations

import csv
import glob
import json
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq

from sail_core.errors import InputError
from sail_core.io.paths import local_path
from sail_core.seeding import derive_seed

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
PARQUET_IMAGE_COLUMNS = ("image", "jpg", "png", "webp", "image_bytes")
CAPTION_COLUMNS = ("caption", "text", "txt", "prompt")
FOLDER_CAPTION_KEYS = ("caption", "text")
FOLDER_FILE_KEYS = ("file_name", "file")
CAPTION_FILES = ("metadata.jsonl", "captions.jsonl", "captions.csv")
TAR_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
PARAMETER = "real.sources"

Kind = Literal["folder", "parquet", "tar"]


@dataclass(frozen=True)
class RealItem:
    """One real image: where its bytes are and its caption."""

    kind: Kind
    file: str
    """The image file (folder), the Parquet file or the tar shard."""
    row: int | None
    """Row of the captions file (folder; None with .txt captions), of the table, or the tar sample index."""
    column: str | None
    """Parquet image column or tar member name; None for a folder image."""
    caption: str
    key: str
    """Identity of the image within its source (seeds its perturbations; independent of the subset)."""


def _caption(value: object, *, file: str | Path, row: int | None, column: str | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError("caption is missing or empty" if value is None or isinstance(value, str)
                         else f"caption is a {type(value).__name__}, not text", file=file, row=row, column=column)
    return value.strip()


def _first_key(record: dict, names: Sequence[str]) -> str | None:
    return next((n for n in names if n in record), None)


# --- listing ---------------------------------------------------------------------------------------


def _caption_records(captions: Path, caption_key: str | None) -> list[tuple[int, str, object, str]]:
    """(row, image name, raw caption, caption column) per image listed in a folder's captions file."""
    if captions.suffix == ".csv":
        with open(captions, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            records = [(row, dict(r)) for row, r in enumerate(reader)]
    else:
        records = []
        for row, line in enumerate(captions.read_text(encoding="utf-8").splitlines()):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not a JSON object ({exc})", file=captions, row=row) from exc
            if not isinstance(record, dict):
                raise InputError("not a JSON object", file=captions, row=row)
            records.append((row, record))
    out = []
    for row, record in records:
        file_key = _first_key(record, FOLDER_FILE_KEYS)
        if file_key is None or not record[file_key]:
            raise InputError("no image file name", file=captions, row=row, column=FOLDER_FILE_KEYS[0])
        column = caption_key or _first_key(record, FOLDER_CAPTION_KEYS) or FOLDER_CAPTION_KEYS[0]
        out.append((row, str(record[file_key]), record.get(column), column))
    return out


def _list_folder(folder: Path, caption_key: str | None) -> list[RealItem]:
    captions = next((folder / n for n in CAPTION_FILES if (folder / n).exists()), None)
    items = []
    if captions is not None:
        for row, name, raw, column in _caption_records(captions, caption_key):
            caption = _caption(raw, file=captions, row=row, column=column)
            image = folder / name
            if not image.is_file():
                raise InputError(f"listed image {name!r} does not exist", file=captions, row=row,
                                 column=FOLDER_FILE_KEYS[0])
            items.append(RealItem("folder", str(image), row, None, caption, f"{folder.name}/{name}"))
        return items
    for image in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        sidecar = image.with_suffix(".txt")
        if not sidecar.exists():
            raise InputError(f"no caption: neither {', '.join(CAPTION_FILES)} nor {sidecar.name} exists",
                             file=image)
        caption = _caption(sidecar.read_text(encoding="utf-8"), file=sidecar, row=None, column=None)
        items.append(RealItem("folder", str(image), None, None, caption, f"{folder.name}/{image.name}"))
    return items


def _pick_column(names: Sequence[str], wanted: str | None, accepted: Sequence[str], file: Path, what: str) -> str:
    if wanted is not None:
        if wanted not in names:
            raise InputError(f"missing {what} column (found: {', '.join(names)})", file=file, column=wanted)
        return wanted
    found = next((n for n in accepted if n in names), None)
    if found is None:
        raise InputError(f"no {what} column: expected one of {', '.join(accepted)} (found: {', '.join(names)})",
                         file=file, column=accepted[0])
    return found


def _list_parquet(file: Path, image_column: str | None, caption_column: str | None) -> list[RealItem]:
    try:
        names = pq.read_schema(file).names
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise InputError(f"not a readable Parquet file ({exc})", file=file) from exc
    image = _pick_column(names, image_column, PARQUET_IMAGE_COLUMNS, file, "image")
    column = _pick_column(names, caption_column, CAPTION_COLUMNS, file, "caption")
    captions = pq.read_table(file, columns=[column]).column(column).to_pylist()
    return [RealItem("parquet", str(file), row, image, _caption(c, file=file, row=row, column=column),
                     f"{file.name}:{row}") for row, c in enumerate(captions)]


def _tar_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member name into (sample key, extension)."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def _list_tar(file: Path, caption_key: str | None) -> list[RealItem]:
    samples: dict[str, dict[str, tarfile.TarInfo]] = {}
    try:
        with tarfile.open(file) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    key, extension = _tar_key(member.name)
                    samples.setdefault(key, {})[extension] = member
            items = []
            for row, (key, members) in enumerate(samples.items()):
                image = next((members[e] for e in TAR_IMAGE_EXTENSIONS if e in members), None)
                if image is None:
                    raise InputError(f"sample {key!r} has no image ({', '.join(TAR_IMAGE_EXTENSIONS)})",
                                     file=file, row=row, column="jpg")
                caption, column = None, "txt"
                if "txt" in members:
                    caption = tar.extractfile(members["txt"]).read().decode("utf-8")  # type: ignore[union-attr]
                elif "json" in members:
                    record = json.loads(tar.extractfile(members["json"]).read())  # type: ignore[union-attr]
                    column = caption_key or _first_key(record, FOLDER_CAPTION_KEYS) or FOLDER_CAPTION_KEYS[0]
                    caption = record.get(column) if isinstance(record, dict) else None
                    column = f"json.{column}"
                items.append(RealItem("tar", str(file), row, image.name,
                                      _caption(caption, file=file, row=row, column=column), f"{file.name}:{key}"))
    except tarfile.TarError as exc:
        raise InputError(f"not a readable tar file ({exc})", file=file) from exc
    return items


def expand_sources(sources: Sequence[str]) -> list[Path]:
    """The folders and files the sources name (``pkg:`` references resolved, globs expanded in sorted order)."""
    if not sources:
        raise InputError("no real image sources given", parameter=PARAMETER)
    paths: list[Path] = []
    for source in sources:
        matches = sorted(glob.glob(local_path(source)))
        if not matches:
            raise InputError("no folder or file matches", file=source, parameter=PARAMETER)
        for match in map(Path, matches):
            if not (match.is_dir() or match.suffix in (".parquet", ".tar")):
                raise InputError("a real image source must be a folder, a .parquet or a .tar file",
                                 file=match, parameter=PARAMETER)
            paths.append(match)
    return paths


def source_files(sources: Sequence[str]) -> list[Path]:
    """Every file the sources consist of (folder contents included): what a cache key fingerprints."""
    files: list[Path] = []
    for path in expand_sources(sources):
        files.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    return files


def list_real_items(sources: Sequence[str], *, image_column: str | None = None,
                    caption_column: str | None = None) -> list[RealItem]:
    """Every real image of the sources with its caption, in source order."""
    items: list[RealItem] = []
    for path in expand_sources(sources):
        if path.is_dir():
            items.extend(_list_folder(path, caption_column))
        elif path.suffix == ".parquet":
            items.extend(_list_parquet(path, image_column, caption_column))
        else:
            items.extend(_list_tar(path, caption_column))
    if not items:
        raise InputError("the real image sources hold no images", parameter=PARAMETER)
    return items


def select_items(items: Sequence[RealItem], max_images: int | None, seed: int) -> list[RealItem]:
    """A seeded random subset of ``max_images`` items (all if None), kept in source order so reads
    stay sequential."""
    if max_images is None or max_images >= len(items):
        return list(items)
    chosen = np.random.default_rng(derive_seed("real-subset", seed)).permutation(len(items))[:max_images]
    return [items[i] for i in sorted(chosen)]


# --- image bytes -----------------------------------------------------------------------------------


class _ParquetImages:
    """Image bytes by row, one row group in memory at a time (items come in row order)."""

    def __init__(self, file: str, column: str) -> None:
        self.file, self.column = file, column
        self.parquet = pq.ParquetFile(file)
        self.bounds = np.cumsum([0] + [self.parquet.metadata.row_group(g).num_rows
                                       for g in range(self.parquet.num_row_groups)])
        self.group, self.values = -1, []

    def get(self, row: int) -> bytes | None:
        group = int(np.searchsorted(self.bounds, row, side="right") - 1)
        if group != self.group:
            self.group = group
            self.values = self.parquet.read_row_group(group, columns=[self.column]).column(0).to_pylist()
        value = self.values[row - int(self.bounds[group])]
        return value.get("bytes") if isinstance(value, dict) else value


def read_image_bytes(items: Sequence[RealItem]) -> Iterator[tuple[RealItem, bytes]]:
    """(item, encoded image bytes) in the given order; a missing image names its file and row."""
    tables: dict[tuple[str, str], _ParquetImages] = {}
    tars: dict[str, tarfile.TarFile] = {}
    try:
        for item in items:
            if item.kind == "folder":
                try:
                    data: bytes | None = Path(item.file).read_bytes()
                except OSError as exc:
                    raise InputError(f"image cannot be read ({exc})", file=item.file, row=item.row) from exc
            elif item.kind == "parquet":
                key = (item.file, item.column or "")
                if key not in tables:
                    tables.clear()  # items come file by file: keep one open table
                    tables[key] = _ParquetImages(item.file, item.column or "")
                data = tables[key].get(item.row or 0)
            else:
                if item.file not in tars:
                    for tar in tars.values():
                        tar.close()
                    tars = {item.file: tarfile.open(item.file)}
                member = tars[item.file].extractfile(item.column or "")
                data = member.read() if member is not None else None
            if not data:
                raise InputError("image bytes are missing", file=item.file, row=item.row, column=item.column)
            yield item, data
    finally:
        for tar in tars.values():
            tar.close()
