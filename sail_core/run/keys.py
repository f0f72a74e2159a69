"""What names one execution of a stage: its key.

A :class:`StageKey` hashes the stage, its group (the round, or an evaluation's label), the config
sections that change its output, the identity of the code that computes it, and fingerprints of
its inputs: content hashes of upstream artifacts, model identities, and user files (by content up to
64 MiB; larger ones by path, size and modification time: Pick-a-Pic is 335 GB, too large to hash).
The key names the stage's output directory, so changing one setting, one input or the stage's code
reruns exactly the stages downstream of it, and a finished artifact is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from sail_core.config import SailConfig
from sail_core.io.atomic import sha256_file
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


CONTENT_FINGERPRINT_LIMIT = 64 << 20


def file_fingerprint(path: str) -> str:
    """A user file: up to 64 MiB by its content, so the key survives the file being copied or checked
    out anew (a worker's fresh clone of the shipped world data, another host); larger files (Pick-a-Pic's
    335 GB) by path, size and modification time."""
    stat = os.stat(path)
    if stat.st_size <= CONTENT_FINGERPRINT_LIMIT:
        return f"sha256:{sha256_file(path)}"
    return f"{os.path.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}"


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
