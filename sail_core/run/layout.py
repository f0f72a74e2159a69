"""Where a run's artifacts live.

Every stage writes into its own directory ``<root>/<group>/<stage>-<key>``, where the key
(:class:`sail_core.run.keys.StageKey`) hashes the stage, the settings and code that affect it and
the content hashes of its inputs. Consequences: a finished artifact is never overwritten (changed
inputs give a new directory); an interrupted stage reruns into the same directory and resumes from
what it left there (generation shards, training step checkpoints).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sail_core.errors import InputError
from sail_core.io.atomic import sha256_tree

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 128 characters"


def check_name(name: object, what: str = "run name", parameter: str | None = None) -> str:
    """The one check of every name that becomes a path component (a run, a report folder, an experiment
    or one of its arms): one component, so ``../x``, ``a/b`` or ``/abs`` cannot put what is written
    under that name anywhere but inside its parent directory. Raises an :class:`InputError` of one line."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        article = "an" if what[:1] in "aeiou" else "a"
        raise InputError(f"{name!r} is not {article} {what}: use {NAME_RULE}", parameter=parameter)
    return name


def check_run_name(name: str) -> str:
    """A run name is one path component inside the runs directory."""
    return check_name(name, "run name", "run_name")


class Artifact(BaseModel):
    """A file or directory of the run (relative path), with the hash of its content when recorded."""

    model_config = ConfigDict(frozen=True)

    path: str
    sha256: str

    @staticmethod
    def of(root: str | Path, path: str | Path) -> Artifact:
        """``path`` is a file or directory under ``root``, given with the root as prefix (relative or absolute)."""
        root = Path(root)
        rel = Path(path).resolve().relative_to(root.resolve())
        return Artifact(path=rel.as_posix(), sha256=sha256_tree(root / rel))

    def resolve(self, root: str | Path) -> Path:
        return Path(root) / self.path

    def verify(self, root: str | Path) -> bool:
        """The artifact still exists and still has the recorded content."""
        full = self.resolve(root)
        return full.exists() and sha256_tree(full) == self.sha256


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def rel(self, path: str | Path) -> str:
        return Path(path).resolve().relative_to(self.root.resolve()).as_posix()

    def stage_dir(self, group: str, stage: str, key: str) -> Path:
        return self.root / group / f"{stage}-{key[:8]}"
