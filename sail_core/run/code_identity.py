"""The identity of the code that computes a stage, so that a cache knows the code.

A stage's key includes a digest of the source of the modules that compute it (its own module and
the ones it declares, e.g. the sampler for generation). The digest is taken over the parsed syntax
tree without docstrings, so reformatting, comments and documentation do not invalidate finished
stages, while any change to what the code does reruns the stage and everything downstream of it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from collections.abc import Iterable
from functools import cache
from pathlib import Path


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def module_digest(module: str) -> str:
    """Digest of one module's code (not its docstrings, comments or layout), found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"{module!r} is not a Python source module")
    tree = _strip_docstrings(ast.parse(Path(spec.origin).read_text(encoding="utf-8")))
    return hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).hexdigest()


def code_digest(modules: Iterable[str]) -> str:
    """16 hex digits over the sorted modules' digests."""
    parts = sorted(set(modules))
    return hashlib.sha256("\n".join(f"{m}:{module_digest(m)}" for m in parts).encode()).hexdigest()[:16]
