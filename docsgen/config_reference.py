"""The configuration reference page, rendered from the pydantic models of ``sail_core/config.py`` and the
shipped presets at build time, so that it cannot drift from the code."""

from __future__ import annotations

import ast
import inspect
import json
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel
from pydantic.fields import FieldInfo


@dataclass(frozen=True)
class Field:
    key: str  # dotted, as --set takes it: reward.k_draws
    type: str
    default: str
    constraints: str
    doc: str


def _field_docs(model: type[BaseModel]) -> dict[str, str]:
    """A field's documentation: the string literal after it, else the comment lines right above it
    (the two ways ``sail_core/config.py`` documents a field)."""
    source_lines, _ = inspect.getsourcelines(model)
    source = "".join(source_lines)
    tree = ast.parse(inspect.cleandoc(source) if source_lines[0].startswith(" ") else source)
    body = tree.body[0].body  # type: ignore[attr-defined]
    lines = "".join(source_lines).split("\n")
    docs: dict[str, str] = {}
    for index, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        after = body[index + 1] if index + 1 < len(body) else None
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
            continue
        comments, row = [], node.lineno - 2
        while row >= 0 and lines[row].strip().startswith("#"):
            comments.insert(0, lines[row].strip().lstrip("#").strip())
            row -= 1
        if comments:
            docs[node.target.id] = " ".join(comments)
    return docs


def _rst_to_md(text: str) -> str:
    text = re.sub(r":(?:class|func|mod|meth|attr):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`").replace("\n", " ")


def _type_name(annotation: object) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(f"`{value}`" for value in typing.get_args(annotation))
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    text = str(annotation).replace("typing.", "").replace("NoneType", "None")
    return re.sub(r"<class '([\w.]+)'>", lambda m: m.group(1).rsplit(".", 1)[-1], text)


def _constraints(info: FieldInfo) -> str:
    symbols = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    out = []
    for item in info.metadata:
        for name, symbol in symbols.items():
            value = getattr(item, name, None)
            if value is not None:
                out.append(f"{symbol} {value}")
    return ", ".join(out)


def _section_model(annotation: object) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def fields(model: type[BaseModel] | None = None, prefix: str = "") -> Iterator[Field]:
    """Every leaf field of the run configuration, depth first, with its dotted key."""
    if model is None:
        from sail_core.config import SailConfig

        model = SailConfig
    docs = _field_docs(model)
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        section = _section_model(info.annotation)
        if section is not None:
            yield from fields(section, key + ".")
            continue
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            dumped = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
            default = f"`{json.dumps(dumped, default=str)}`"
        yield Field(key, _type_name(info.annotation), default, _constraints(info), _rst_to_md(docs.get(name, "")))


def sections() -> list[tuple[str, str]]:
    """The top-level sections and their class docstrings, in the order the model declares them."""
    from sail_core.config import SailConfig

    out = []
    for name, info in SailConfig.model_fields.items():
        section = _section_model(info.annotation)
        if section is not None:
            out.append((name, _rst_to_md(inspect.getdoc(section) or "") if section.__doc__ else ""))
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _preset_yaml(name: str) -> str:
    import yaml

    from sail_core.config import load_config

    return yaml.safe_dump(load_config(name).model_dump(mode="json"), sort_keys=False)


def render() -> str:
    from sail_core.config import available_presets

    out = ["# Configuration", "",
           "Generated from the pydantic models in `sail_core/config.py` and the shipped presets when the site is "
           "built. A run is one `SailConfig`: a preset (`--preset world|world-realalign|sd15|sdxl`) or a YAML "
           "file (`--config FILE`, which may start from another with `extends: <preset or file>`), then "
           "`--set key=value` overrides, each value parsed as YAML (`--set 'seed_data.pairs=[\"a.parquet\"]'`). "
           "`sail config --preset NAME --set ...` prints the resolved configuration. An unknown key, or a value "
           "its field refuses, is an error naming the key and whether the file or an override set it.", ""]
    grouped: dict[str, list[Field]] = {}
    for field in fields():
        grouped.setdefault(field.key.split(".", 1)[0] if "." in field.key else "", []).append(field)
    docs = dict(sections())
    for section in ["", *docs]:
        rows = grouped.get(section, [])
        if not rows:
            continue
        out += [f"## `{section}`" if section else "## Top level", ""]
        if docs.get(section):
            out += [docs[section], ""]
        out += ["| key | type | default | what |", "|---|---|---|---|"]
        for f in rows:
            bound = f" ({f.constraints})" if f.constraints else ""
            out.append(f"| `{f.key}` | {_cell(f.type)}{bound} | {_cell(f.default)} | {_cell(f.doc)} |")
        out.append("")
    out += ["## The presets", "", "Each preset as `sail config --preset NAME` prints it.", ""]
    for name in available_presets():
        out += [f"??? note \"`{name}`\"", "", "    ```yaml",
                *("    " + line for line in _preset_yaml(name).rstrip().split("\n")), "    ```", ""]
    return "\n".join(out)
