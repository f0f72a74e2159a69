"""The ``sail …`` commands written in the documentation, as argument lists: what
``tests/docs/test_commands.py`` parses with the real parser."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from docsgen.markdown import blocks, code_spans

_SHELL_BLOCKS = {"bash", "sh", "shell", "console", ""}
# `sail run: error: ...` is a message, not a command: a subcommand is a plain lowercase word
_SUBCOMMAND = re.compile(r"^[a-z][a-z-]*$")


@dataclass(frozen=True)
class Command:
    file: Path
    line: int
    text: str

    def argv(self) -> list[str]:
        """The arguments after ``sail``, as a shell would split them (comments dropped)."""
        # a shell variable stands for a value its loop gives (`for seed in 0 1 2; do sail ... --seed $seed`)
        return shlex.split(re.sub(r"\$\{?\w+\}?", "0", self.text), comments=True)[1:]


def _is_sail(text: str) -> bool:
    words = text.split()
    return len(words) >= 2 and words[0] == "sail" and bool(_SUBCOMMAND.match(words[1]))


def _block_commands(path: Path, text: str, first_line: int) -> list[Command]:
    found, lines, index = [], text.split("\n"), 0
    while index < len(lines):
        line = lines[index].strip().removeprefix("$ ")
        start = index
        while line.endswith("\\") and index + 1 < len(lines):  # continuation lines
            index += 1
            line = line[:-1] + " " + lines[index].strip()
        # `A && sail ...` and `cmd; sail ...`: each sail command on its own
        for part in re.split(r"\s(?:&&|;|\|\|)\s", line):
            part = part.strip()
            if _is_sail(part):
                found.append(Command(path, first_line + start, part))
        index += 1
    return found


def commands(path: Path) -> list[Command]:
    """Every ``sail`` command of a markdown file: each in a shell code block, and each code span that
    starts with ``sail <subcommand>`` and gives an option (a bare ``sail export`` names a command)."""
    found: list[Command] = []
    for block in blocks(path.read_text(encoding="utf-8")):
        if block.lang is None:
            for span in code_spans(block.text):
                if _is_sail(span) and any(word.startswith("-") for word in span.split()[2:]):
                    found.append(Command(path, block.line, span))
        elif block.lang in _SHELL_BLOCKS:
            found += _block_commands(path, block.text, block.line)
    return found
