"""What the GPU check imports, what the machine already has, and which carried wheels fill the gaps.

    python -m bench.gpu_env plan WHEELHOUSE   # stdout: the wheels to install, one path a line; stderr: why
    python -m bench.gpu_env verify            # imports what the check needs, prints versions and the device

A GPU machine here may reach no package index: what ``bench/gpu_check.py`` imports beyond torch must
be on the machine already or come along with the tree as wheels (``bench/make_wheelhouse.sh``). A
package is installed from the wheelhouse only when the machine lacks it or has a version outside the
range ``pyproject.toml`` allows, and then so are the requirements of that wheel the machine does not
meet. The machine's own packages are otherwise left alone (their consistency is the image's).
Only the standard library and ``packaging`` are imported here, so this runs before anything is installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent

NEEDED: dict[str, str] = {
    "torch": "torch", "diffusers": "diffusers", "transformers": "transformers", "accelerate": "accelerate",
    "peft": "peft", "pydantic": "pydantic", "pyyaml": "yaml", "safetensors": "safetensors", "numpy": "numpy",
    "pillow": "PIL", "packaging": "packaging",
}
"""Distributions the check imports (directly or through ``sail_core``), by canonical name → module."""

NEVER_FROM_WHEELS = {"torch"}
"""Too large to carry (and it must be the machine's CUDA build)."""


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str
    version: Version
    requires: tuple[Requirement, ...]


@dataclass(frozen=True)
class Plan:
    install: tuple[Wheel, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...]


def project_specifiers(pyproject: Path = REPO / "pyproject.toml") -> dict[str, SpecifierSet]:
    """The version range ``pyproject.toml`` allows for each dependency, by canonical name."""
    text = pyproject.read_text()
    try:
        import tomllib

        dependencies = tomllib.loads(text)["project"]["dependencies"]
    except ModuleNotFoundError:  # Python 3.10: read the one array this needs
        block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
        dependencies = re.findall(r'"([^"]+)"', block.group(1)) if block else []
    out = {}
    for line in dependencies:
        requirement = Requirement(line)
        out[canonicalize_name(requirement.name)] = requirement.specifier
    return out


def installed_versions() -> dict[str, Version]:
    """Installed distributions; where one is installed twice, the copy Python imports (first on the path)."""
    out: dict[str, Version] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonicalize_name(name) not in out:
            out[canonicalize_name(name)] = Version(dist.version)
    return out


def read_wheel(path: Path) -> Wheel:
    name, version, _, _ = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(metadata).decode())
    requires = tuple(Requirement(r) for r in message.get_all("Requires-Dist") or ())
    return Wheel(path, canonicalize_name(name), version, requires)


def wheelhouse(folder: Path, tags: set[Tag] | None = None) -> dict[str, list[Wheel]]:
    """The wheels in ``folder`` that this interpreter can install, by canonical name."""
    tags = set(sys_tags()) if tags is None else tags
    out: dict[str, list[Wheel]] = {}
    for path in sorted(folder.glob("*.whl")) if folder.is_dir() else []:
        if parse_wheel_filename(path.name)[3] & tags:
            wheel = read_wheel(path)
            out.setdefault(wheel.name, []).append(wheel)
    return out


def _applies(requirement: Requirement) -> bool:
    return requirement.marker is None or requirement.marker.evaluate({"extra": ""})


def plan(needed: dict[str, SpecifierSet], installed: dict[str, Version], wheels: dict[str, list[Wheel]],
         source: str = "the wheelhouse") -> Plan:
    """Which wheels to install so that every needed distribution and every requirement of an installed
    wheel is met, preferring what is already installed; ``problems`` lists what nothing can meet."""
    queue = [(Requirement(f"{name}{spec}"), "gpu_check") for name, spec in needed.items()]
    chosen: dict[str, Wheel] = {}
    seen: list[tuple[Requirement, str]] = []
    problems: list[str] = []
    notes: list[str] = []
    while queue:
        requirement, wanted_by = queue.pop(0)
        if not _applies(requirement):
            continue
        seen.append((requirement, wanted_by))
        name = canonicalize_name(requirement.name)
        if name in chosen:
            continue  # checked once everything is chosen
        have = installed.get(name)
        if have is not None and requirement.specifier.contains(have, prereleases=True):
            continue
        fits = [w for w in wheels.get(name, []) if requirement.specifier.contains(w.version, prereleases=True)]
        state = f"installed {have}" if have is not None else "not installed"
        if name in NEVER_FROM_WHEELS or not fits:
            problems.append(f"{requirement} (wanted by {wanted_by}): {state}, and no wheel for it in {source}"
                            + (" (torch must be the machine's own CUDA build)" if name in NEVER_FROM_WHEELS else ""))
            continue
        wheel = max(fits, key=lambda w: w.version)
        chosen[name] = wheel
        notes.append(f"{name}: {state}, needs {requirement.specifier or 'any version'} → {wheel.path.name}")
        queue.extend((r, name) for r in wheel.requires)
    final = {**installed, **{name: w.version for name, w in chosen.items()}}
    for requirement, wanted_by in seen:
        name = canonicalize_name(requirement.name)
        if name in final and not requirement.specifier.contains(final[name], prereleases=True):
            problem = f"{requirement} (wanted by {wanted_by}) conflicts with {name} {final[name]} after the install"
            if problem not in problems:
                problems.append(problem)
    return Plan(tuple(chosen.values()), tuple(problems), tuple(notes))


def needed_specifiers() -> dict[str, SpecifierSet]:
    specs = project_specifiers()
    return {name: specs.get(name, SpecifierSet()) for name in NEEDED}


def verify() -> int:
    failed = 0
    for dist, module in NEEDED.items():
        try:
            importlib.import_module(module)
            print(f"ok  {dist} {importlib.metadata.version(dist)}")
        except Exception as exc:  # any import failure is reported, not raised: the line says which
            failed += 1
            print(f"FAILED  {dist}: import {module}: {type(exc).__name__}: {exc}")
    import torch

    cuda = torch.cuda.is_available()
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device: "
          f"{torch.cuda.get_device_name() if cuda else 'none (CPU only)'}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    plan_parser = sub.add_parser("plan", help="print the wheels to install")
    plan_parser.add_argument("wheelhouse", type=Path)
    sub.add_parser("verify", help="import everything the check needs")
    args = parser.parse_args(argv)
    if args.command == "verify":
        return verify()
    result = plan(needed_specifiers(), installed_versions(), wheelhouse(args.wheelhouse), str(args.wheelhouse))
    for note in result.notes:
        print(f"gpu_env: install {note}", file=sys.stderr)
    for problem in result.problems:
        print(f"gpu_env: MISSING {problem}", file=sys.stderr)
    if not result.install and not result.problems:
        print("gpu_env: every package the check needs is installed", file=sys.stderr)
    for wheel in result.install:
        print(wheel.path)
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
