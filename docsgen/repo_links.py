"""Links from the documentation to files outside ``docs/`` (results, benchmarks, experiment specs).

Pages link to repository files by their relative path, which works where the markdown is read as is.
The site carries those files too, under ``repo/<path>``, and the hooks rewrite such links to point there,
so a link to a file that does not exist still fails the strict build."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from docsgen.markdown import LINK, is_external, link_targets, map_prose
from docsgen.paths import ROOT

PREFIX = "repo/"


def site_uri(repo_path: str) -> str:
    """Where a repository file sits in the site's sources."""
    return repo_path.removeprefix("docs/") if repo_path.startswith("docs/") else PREFIX + repo_path


def resolve(page: str, target: str) -> str | None:
    """The repository path a relative link of ``page`` (a repository path) points at; a folder means its
    README.md. None when it leaves the repository or names nothing."""
    path = posixpath.normpath(posixpath.join(posixpath.dirname(page), target))
    if path.startswith("../") or path == "..":
        return None
    if (ROOT / path).is_dir():
        for name in ("README.md", "index.md"):
            if (ROOT / path / name).is_file():
                return f"{path}/{name}".lstrip("./")
        return None
    return path if (ROOT / path).is_file() else None


def outside_docs(page: str, markdown: str) -> list[str]:
    """The existing files outside docs/ that a page links to."""
    found = []
    for target in link_targets(markdown):
        path = resolve(page, target)
        if path is not None and not path.startswith("docs/"):
            found.append(path)
    return found


def closure(pages: Iterable[str]) -> set[str]:
    """Every file outside docs/ reachable by links from ``pages``, following markdown files' own links."""
    seen: set[str] = set()
    todo = list(pages)
    while todo:
        page = todo.pop()
        if not page.endswith(".md"):
            continue
        for path in outside_docs(page, (ROOT / page).read_text(encoding="utf-8")):
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return seen


def rewrite(markdown: str, page: str) -> str:
    """``page``'s links as the site needs them: relative to where the page sits among the site's sources."""
    here = posixpath.dirname(site_uri(page))

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if is_external(target):
            return match.group(0)
        path_part, sep, anchor = target.partition("#")
        path = resolve(page, path_part) if path_part else None
        if path is None:
            return match.group(0)  # left as written: mkdocs reports it if it is broken
        new = posixpath.relpath(site_uri(path), here or ".")
        return f"{match.group(1)}{new}{sep}{anchor}{match.group(3)}"

    return map_prose(markdown, lambda prose: LINK.sub(fix, prose))
