"""Just enough markdown structure for the site's hooks and the documentation checks: fenced blocks,
code spans and link targets. Regular expressions suffice because the pages are ours and simple."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_FENCE = re.compile(r"^( {0,3})(```+|~~~+)\s*([\w+-]*)[^\n]*$")
# [text](target "title") and ![alt](target); the target has no spaces in these pages
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


@dataclass(frozen=True)
class Block:
    """A run of lines: prose (``lang`` None) or one fenced code block (``lang`` its info string, maybe "")."""

    text: str
    lang: str | None
    line: int  # 1-based line of the block's first line in the file


def blocks(text: str) -> Iterator[Block]:
    lines = text.split("\n")
    start, prose, fence, lang = 0, [], None, ""
    body: list[str] = []
    for number, line in enumerate(lines):
        match = _FENCE.match(line)
        if fence is None and match:
            if prose:
                yield Block("\n".join(prose), None, start + 1)
            fence, lang, body, start = match.group(2), match.group(3), [], number + 1
        elif fence is not None and line.strip().startswith(fence) and not line.strip().strip(fence[0]):
            yield Block("\n".join(body), lang, start + 1)
            fence, prose, start = None, [], number + 1
        elif fence is not None:
            body.append(line)
        else:
            if not prose:
                start = number
            prose.append(line)
    if fence is not None:
        yield Block("\n".join(body), lang, start + 1)
    elif prose:
        yield Block("\n".join(prose), None, start + 1)


def map_prose(text: str, change: Callable[[str], str]) -> str:
    """``text`` with ``change`` applied to every piece of prose (outside fenced blocks and code spans),
    everything else kept byte for byte."""
    out, fence = [], None
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(2)
        elif fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                fence = None
        else:
            line = _rejoin(_CODE_SPAN.split(line), change)  # text, ticks, code, text, ticks, code, ...
        out.append(line)
    return "\n".join(out)


def _rejoin(pieces: list[str], change: Callable[[str], str]) -> str:
    out = []
    for i in range(0, len(pieces), 3):
        out.append(change(pieces[i]))
        if i + 2 < len(pieces):
            out.append(pieces[i + 1] + pieces[i + 2] + pieces[i + 1])
    return "".join(out)


def code_spans(prose: str) -> list[str]:
    return [m.group(2).strip() for m in _CODE_SPAN.finditer(prose)]


def without_code_spans(prose: str) -> str:
    return _CODE_SPAN.sub("", prose)


def is_external(target: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", target)) or target.startswith(("#", "/"))


def link_targets(text: str) -> list[str]:
    """Targets of the links and images in prose (not in code), anchors and queries removed."""
    out = []
    for block in blocks(text):
        if block.lang is None:
            for match in LINK.finditer(without_code_spans(block.text)):
                target = match.group(2)
                if not is_external(target):
                    out.append(target.split("#", 1)[0].split("?", 1)[0])
    return [t for t in out if t]
