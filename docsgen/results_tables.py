"""Tables of committed results, included in a page when the site is built, never copied by hand.

A page asks for one with an HTML comment (invisible where the markdown is read as is, beside a link to
the file)::

    <!-- results-table: experiments/results/claims/metrics.md model=round-03,iteration-0 -->

The file is a markdown table that ``sail experiment`` wrote; ``column=value[,value...]`` keeps the rows
whose column holds one of the values (several filters: all must hold).
"""

from __future__ import annotations

import re
from pathlib import Path

from docsgen.markdown import map_prose

MARKER = re.compile(r"<!--\s*results-table:\s*(\S+)((?:\s+[\w.-]+=[^\s>]+)*)\s*-->")


class TableError(ValueError):
    """A marker that names no table, or filters that keep no row: the build stops on it."""


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table(root: Path, relative: str, filters: dict[str, list[str]]) -> str:
    path = root / relative
    if not path.is_file():
        raise TableError(f"results table {relative} does not exist")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip().startswith("|")]
    if len(lines) < 3:
        raise TableError(f"{relative} holds no markdown table")
    header = _cells(lines[0])
    for column in filters:
        if column not in header:
            raise TableError(f"{relative} has no column {column!r} (columns: {header})")
    kept = [line for line in lines[2:]
            if all(_cells(line)[header.index(c)] in values for c, values in filters.items())]
    if not kept:
        raise TableError(f"no row of {relative} matches {filters}")
    return "\n".join([lines[0], lines[1], *kept])


def expand(markdown: str, root: Path) -> str:
    def replace(match: re.Match) -> str:
        filters = {}
        for item in match.group(2).split():
            column, values = item.split("=", 1)
            filters[column] = values.split(",")
        return "\n" + table(root, match.group(1), filters) + "\n"

    # only in prose: a page may show the marker's syntax in a code span or block
    return map_prose(markdown, lambda prose: MARKER.sub(replace, prose))


def markers(markdown: str) -> list[str]:
    return [m.group(1) for m in MARKER.finditer(markdown)]
