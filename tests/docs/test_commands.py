"""Every ``sail …`` command in the README and the docs is one the real parser accepts, and every
``--set key=value`` in it resolves through the configuration (a renamed flag or field fails here)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex

import pytest

from docsgen.commands import commands
from docsgen.markdown import blocks
from docsgen.paths import ROOT, markdown_sources, repo_relative

ALL = [c for path in markdown_sources() for c in commands(path)]


def _id(command) -> str:
    return f"{repo_relative(command.file)}:{command.line}"


def _parse(argv: list[str]):
    from sail_cli.main import build_parser

    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            return build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"the parser refuses it: {errors.getvalue().strip().splitlines()[-1]}")


def test_the_docs_have_commands_to_check():
    assert len(ALL) > 40 and any(c.argv()[:1] == ["run"] for c in ALL)


@pytest.mark.parametrize("command", ALL, ids=_id)
def test_each_command_parses_and_its_overrides_resolve(command):
    args = _parse(command.argv())
    overrides = getattr(args, "set", None)
    if overrides:
        from sail_core.config import load_config

        # a config file named as an example (my-run.yaml) is not in the repository: its preset stands in
        config = getattr(args, "config", None)
        source = config if config and (ROOT / config).is_file() else getattr(args, "preset", None) or "world"
        source = ROOT / source if source == config else source
        load_config(source, overrides)  # raises InputError naming the key that does not resolve


def _deployment_runs():
    """``prefect deployment run sail-loop/<preset> ... -p overrides='{...}'``: the JSON's keys are --set keys."""
    for path in markdown_sources():
        for block in blocks(path.read_text(encoding="utf-8")):
            if block.lang != "bash":
                continue
            text = re.sub(r"\\\n\s*", " ", block.text)
            for match in re.finditer(r"prefect deployment run sail-loop/(\w+)((?:[^\n]|\n(?!\S))*)", text):
                words = shlex.split(match.group(2).replace("\n", " "), comments=True)
                for word in words:
                    if word.startswith("overrides="):
                        yield pytest.param(match.group(1), word.removeprefix("overrides="), id=repo_relative(path))


@pytest.mark.parametrize(("preset", "overrides"), list(_deployment_runs()))
def test_deployment_overrides_resolve(preset, overrides):
    from sail_core.config import load_config

    load_config(preset, json.loads(overrides))
