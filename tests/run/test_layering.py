"""The package's floors: each imports only from the floors below it (lazy imports inside functions
included), sail_core never imports the orchestration layer, and the pair schema imports without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# lowest first; modules of one floor may import each other
FLOORS = [
    ("sail_core.errors", "sail_core.seeding"),
    ("sail_core.io",),
    ("sail_core.config",),
    ("sail_core.images",),
    ("sail_core.data",),
    ("sail_core.models",),
    ("sail_core.algorithm",),
    ("sail_core.training",),
    ("sail_core.run",),
    ("sail_core.evaluation",),
    ("sail_core.export",),
    ("sail_core.stages",),
    ("sail_core.plan",),
    ("sail_core.preflight",),
    ("sail_core.experiments",),
    ("sail_core.world",),
]


def _floor(module: str) -> int | None:
    for index, prefixes in enumerate(FLOORS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_every_import_goes_down_a_floor_or_stays_on_it():
    upward = []
    for path in sorted((ROOT / "sail_core").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        own = _floor(module)
        assert own is not None or module == "sail_core", f"{module} is on no floor: add it to FLOORS"
        for name in _imports(path):
            if name.split(".")[0] in ("tasks", "flows", "sail_cli", "prefect"):
                upward.append(f"{module} -> {name} (orchestration)")
            target = _floor(name) if name.startswith("sail_core.") else None
            if own is not None and target is not None and target > own:
                upward.append(f"{module} -> {name}")
    assert upward == []


def test_pair_schema_and_mixup_import_without_torch_or_transformers():
    code = ("import sys; import sail_core.data.pairs, sail_core.algorithm.mixup; "
            "print(sorted(m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_flows_and_the_cli_import_without_the_model_libraries():
    """A process that only orchestrates (a flow whose stages are cached, ``prefect deploy`` loading the
    flows, a crash hook, a refused ``sail run``, the pretraining bench's driver of its variant processes)
    never pays for diffusers, transformers, peft or accelerate (about 5 s of a 10 s start on two cores):
    they are imported where a model is built, loaded or scored."""
    code = ("import sys; import flows.sail_loop, flows.sail_shard, sail_cli.main, sail_core.stages, "
            "bench.world_pretrain; "
            "print(sorted(m for m in ('diffusers', 'transformers', 'peft', 'accelerate') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_module_outside_the_world_names_it():
    """The embedded world is a plain preset: its files are ``pkg:`` paths in the preset and its judge a
    registered scorer, so no module of the library special-cases it."""
    offenders = []
    for path in sorted((ROOT / "sail_core").rglob("*.py")):
        if "world" in path.relative_to(ROOT / "sail_core").parts:
            continue
        tree = ast.parse(path.read_text())
        strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        docstrings = {ast.get_docstring(n, clean=False) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef))}
        if any(s == "world" for s in strings if s not in docstrings) or any(
                name.startswith("sail_core.world") for name in _imports(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
