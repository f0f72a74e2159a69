"""Paths in configs: plain paths, globs, and ``pkg:<package>/<path>`` for files shipped inside a Python
package (the embedded world's model and data are ``pkg:sail_core.world/...``).

A ``pkg:`` reference stays symbolic in configs and cache keys, so a run does not depend on where the
package is installed; it becomes a filesystem path only where a file is opened.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sail_core.errors import InputError

PACKAGE_SCHEME = "pkg:"


def local_path(ref: str | Path) -> str:
    """The filesystem path (or glob) a config entry names."""
    text = str(ref)
    if not text.startswith(PACKAGE_SCHEME):
        return text
    package, _, inner = text[len(PACKAGE_SCHEME):].partition("/")
    spec = importlib.util.find_spec(package) if package else None
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"no installed package {package!r}", file=text)
    return str(Path(next(iter(spec.submodule_search_locations))) / inner)
