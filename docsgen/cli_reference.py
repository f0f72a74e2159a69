"""The CLI reference page, rendered from the real ``sail`` parser (``sail_cli.main.build_parser``) at build
time, so that it cannot drift from the code."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def build_parser() -> argparse.ArgumentParser:
    from sail_cli.main import build_parser as sail_parser

    return sail_parser()


def subcommands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """The parser's direct subcommands: name -> (parser, one-line help)."""
    found: dict[str, tuple[argparse.ArgumentParser, str]] = {}
    for action in parser._actions:  # argparse exposes subparsers only through its private actions
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                found[name] = (sub, helps.get(name, ""))
    return found


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("sail",), help_text: str = ""
         ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every command, depth first: ("sail", "world", "audit"), its parser and its help."""
    yield path, parser, help_text
    for name, (sub, text) in subcommands(parser).items():
        yield from walk(sub, (*path, name), text)


def _cell(text: object) -> str:
    # a help's <name> would be read as an HTML tag and vanish from the page
    return str(text).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def _option_row(action: argparse.Action) -> str | None:
    if action.help == argparse.SUPPRESS or isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
        return None
    if action.option_strings:
        name = ", ".join(f"`{o}`" for o in action.option_strings)
        if action.nargs != 0:
            name += f" `{action.metavar or action.dest.upper()}`"
    else:
        name = f"`{action.metavar or action.dest}`"
    if isinstance(action, argparse._AppendAction):
        name += " (repeatable)"
    default = action.default
    shown = "" if default in (None, [], False, argparse.SUPPRESS) or action.nargs == 0 else f"`{default}`"
    choices = f" One of: {', '.join(f'`{c}`' for c in action.choices)}." if action.choices else ""
    return f"| {name} | {shown} | {_cell(action.help or '')}{choices} |"


def render() -> str:
    parser = build_parser()
    out = ["# Command line", "",
           "Generated from `sail`'s own argument parser when the site is built, so it lists exactly what "
           "the installed version accepts. Every command also answers `--help`, and `--debug` (before or after "
           "the command) shows a failure's full traceback instead of its one-line message.", ""]
    for path, sub, help_text in walk(parser):
        if len(path) == 1:
            continue
        title = " ".join(path)
        level = "#" * min(len(path), 4)
        out += [f"{level} `{title}`", ""]
        if help_text:
            out += [_cell(help_text[0].upper() + help_text[1:]) + ".", ""]
        usage = sub.format_usage().removeprefix("usage: ").strip()
        out += ["```text", usage, "```", ""]
        rows = [row for row in map(_option_row, sub._actions) if row]
        if rows:
            out += ["| argument | default | what |", "|---|---|---|", *rows, ""]
    return "\n".join(out)
