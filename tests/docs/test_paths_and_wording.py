"""The README and the docs speak to users about the project: every repository path they write in backticks
exists, and they name no machine-local path and nothing about how the project was built."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from docsgen.markdown import blocks, code_spans
from docsgen.paths import ROOT, markdown_sources, repo_relative

SOURCES = markdown_sources()
# the repository's top level: a backticked path starting with one of these is a path into the repository
TOP = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")} | {".ci"}
PLACEHOLDER = re.compile(r"[<>*{}…\[\]$]|\.\.\.")


def _repository_paths(path: Path) -> list[str]:
    found = []
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.lang is None:
            for span in code_spans(block.text):
                # a table of durations before and after names tests that have since been merged: only
                # prose must name tests that exist (a table row keeps its file's check, not the name's)
                if "::" in span and any(line.lstrip().startswith("|") and span in line
                                        for line in block.text.split("\n")):
                    span = span.split("::")[0]
                candidate = span.split("::")[0].rstrip(".,;:")
                if " " in candidate or PLACEHOLDER.search(candidate) or "=" in candidate:
                    continue
                if candidate.split("/")[0] in TOP and (candidate.count("/") or "." in candidate):
                    found.append(span)
    return found


def _ignored(paths: list[str]) -> set[str]:
    """Paths git ignores (outputs such as bench/wheelhouse): named in the docs, absent from a checkout."""
    if not (ROOT / ".git").exists():
        return set()
    done = subprocess.run(["git", "check-ignore", "--stdin"], cwd=ROOT, input="\n".join(paths), text=True,
                          capture_output=True)
    return set(done.stdout.split())


@pytest.mark.parametrize("source", SOURCES, ids=repo_relative)
def test_every_backticked_repository_path_exists(source):
    spans = _repository_paths(source)
    files = [s.split("::")[0].rstrip(".,;:") for s in spans]
    ignored = _ignored(files)
    missing = [f for f in files if not (ROOT / f).exists() and f not in ignored]
    assert not missing, f"{repo_relative(source)} names paths that do not exist: {missing}"
    for span in spans:  # tests/x.py::test_name: the test is there too
        if "::" in span:
            file, name = span.split("::", 1)
            assert re.search(rf"def {re.escape(name.split('[')[0])}\b", (ROOT / file).read_text()), span


FORBIDDEN = {
    "a machine-local path": r"(?<![\w.])/(?:work|home|tmp|Users|root|opt|mnt)/",
    "an issue number or issue talk": r"\bissues?\b",
    "notes that are not in the repository": r"\bfield[- ]notes?\b",
    "how the project was built": r"\b(?:sessions?|helpers?|worktrees?|workplace|submissions?|device tool|"
                                 r"lent|merged this|that merged|who merged)\b",
    "this build machine": r"\bthis machine\b|\bhere \(offline\)",
    "a tool call of the build environment": r"\brun\(command=",
}


@pytest.mark.parametrize("source", [*SOURCES, ROOT / "CITATION.cff", ROOT / "mkdocs.yml"], ids=repo_relative)
def test_no_machine_paths_or_words_about_how_it_was_built(source):
    problems = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        for what, pattern in FORBIDDEN.items():
            for match in re.finditer(pattern, line, flags=re.IGNORECASE):
                problems.append(f"line {number}: {match.group(0)!r} ({what})")
    assert not problems, f"{repo_relative(source)}:\n" + "\n".join(problems)
