"""What names one execution of a stage: its key.

A :class:`StageKey` hashes the stage, its group (the round, or an evaluation's label), the config
sections that change its output, the identity of the code that computes it, and fingerprints of
its inputs: content hashes of upstream artifacts, model identities, and user files by what they hold
(:func:`file_fingerprint`; never by path or modification time, so a run moved to another disk, host
or checkout of the package keeps its keys). The key names the stage's output directory, so changing
one setting, one input or the stage's code reruns exactly the stages downstream of it, and a
finished artifact is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sail_core.config import SailConfig
from sail_core.errors import InputError
from sail_core.io.paths import local_path
from sail_core.run.layout import Artifact


@dataclass(frozen=True)
class StageKey:
    stage: str
    group: str
    settings: dict[str, Any]
    inputs: tuple[str, ...]
    code: str = ""
    """Digest of the code that computes the stage (:mod:`sail_core.run.code_identity`)."""

    @property
    def key(self) -> str:
        """16 hex digits naming this execution of the stage."""
        payload = json.dumps({"stage": self.stage, "group": self.group, "settings": self.settings,
                              "inputs": list(self.inputs), "code": self.code}, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def model_settings(config: SailConfig) -> dict[str, Any]:
    """What fixes the frozen parts (codec, text encoders) and the base UNet: in every stage's key."""
    model = config.model.model_dump(mode="json")
    return {k: model[k] for k in ("family", "source", "revision", "variant", "vae_source", "codec", "resolution",
                                  "frozen_dtype", "empty_prompt_zeros")}


FULL_HASH_MAX_BYTES = 64 << 20
"""Files up to this size (prompt lists, the world's data, a small seed set) are hashed whole."""
SAMPLED_BLOCKS, SAMPLED_BLOCK_BYTES = 16, 64 << 10
_PARQUET_MAGIC = b"PAR1"
_fingerprints: dict[tuple[str, int, int, int], str] = {}
"""Fingerprints computed in this process, by (real path, size, mtime, inode): a file is read once."""


def file_fingerprint(path: str | Path) -> str:
    """What a user file holds, independent of where it is: ``<file name>:<size>:<digest>``.

    The digest is the SHA-256 of the whole file up to :data:`FULL_HASH_MAX_BYTES`; of a larger Parquet
    file, the SHA-256 of its footer (the schema and every row group's offsets, sizes, row counts and
    column statistics: Pick-a-Pic's 335 GB are fingerprinted in seconds); of any other larger file,
    the SHA-256 of :data:`SAMPLED_BLOCKS` blocks at evenly spaced offsets, first and last included.
    The file name is kept because what a stage writes can depend on it (pair ids name their file).
    So a moved or copied file, a checkout of the package elsewhere, or another host's copy of the
    same data gives the same key, and an edited file a new one (except, for a large non-Parquet file,
    an edit of the same size outside the sampled blocks: replace such a file under a new name)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", file=path) from exc
    cache_key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if cache_key not in _fingerprints:
        _fingerprints[cache_key] = f"{path.name}:{stat.st_size}:{_content_digest(path, stat.st_size)}"
    return _fingerprints[cache_key]


def path_fingerprint(ref: str | Path) -> str:
    """A config's file entry (a path or ``pkg:`` reference) by content: a file as :func:`file_fingerprint`,
    a folder as its name and the fingerprints of every file in it by relative path."""
    path = Path(local_path(ref))
    if not path.is_dir():
        return file_fingerprint(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    listing = "\n".join(f"{f.relative_to(path).as_posix()}={file_fingerprint(f)}" for f in files)
    return f"{path.name}/:{len(files)}:sha256:{hashlib.sha256(listing.encode()).hexdigest()}"


def _content_digest(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FULL_HASH_MAX_BYTES:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
            return "sha256:" + digest.hexdigest()
        handle.seek(size - 8)
        tail = handle.read(8)
        if tail[4:] == _PARQUET_MAGIC:
            footer = int.from_bytes(tail[:4], "little")
            if footer + 8 > size:
                raise InputError(f"not a readable Parquet file (its footer claims {footer} bytes)", file=path)
            handle.seek(size - 8 - footer)
            digest.update(handle.read(footer + 8))
            return "parquet-footer:" + digest.hexdigest()
        for i in range(SAMPLED_BLOCKS):
            handle.seek((size - SAMPLED_BLOCK_BYTES) * i // (SAMPLED_BLOCKS - 1))
            digest.update(handle.read(SAMPLED_BLOCK_BYTES))
        return "sampled:" + digest.hexdigest()


def fingerprint(value: Any) -> str:
    """What of an input a key depends on: an artifact's content hash, a model's identity (``identity``),
    a record's artifacts, and plain values as they are."""
    if value is None:
        return "-"
    if isinstance(value, Artifact):
        return value.sha256
    if isinstance(value, BaseModel):
        identity = getattr(value, "identity", None)
        if isinstance(identity, str):
            return identity
        return "{" + ",".join(f"{name}={fingerprint(getattr(value, name))}" for name in type(value).model_fields
                              if _keyed(getattr(value, name))) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(fingerprint(v) for v in value) + "]"
    if isinstance(value, (str, int, float, bool)):
        return json.dumps(value)
    raise TypeError(f"cannot fingerprint a {type(value).__name__} stage input")


def _keyed(value: Any) -> bool:
    """Inside a record only its artifacts (and nested records) count: counts and metrics follow from them."""
    if isinstance(value, (list, tuple)):
        return any(_keyed(v) for v in value)
    return isinstance(value, BaseModel)


def input_fingerprints(inputs: BaseModel, external: Sequence[str] = ()) -> tuple[str, ...]:
    """One entry per input field (``name=fingerprint``), then the stage's external files."""
    fields = tuple(f"{name}={fingerprint(getattr(inputs, name))}" for name in type(inputs).model_fields)
    return fields + tuple(external)
