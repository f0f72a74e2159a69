"""Where the documentation lives: the files the site is built from and the checks read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def markdown_sources() -> list[Path]:
    """Every markdown file a reader meets: the README, the docs pages, and the READMEs beside results and
    benchmarks that the site includes (the experiment histories live next to their data)."""
    found = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    for folder in ("experiments/results", "bench"):
        found += sorted((ROOT / folder).rglob("README.md"))
    return found


def repo_relative(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()
