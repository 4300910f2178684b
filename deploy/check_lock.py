"""Check that the lock files cover pyproject.toml: every dependency pinned to a version its
specifier allows, and every pin carrying sha256 hashes. `make install` runs it before installing,
so a dependency added to pyproject.toml without `make lock` stops with this message instead of a
missing module later.

    python deploy/check_lock.py    # exit 0, or 1 with one line per problem
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = {"requirements.lock": ("dependencies",), "requirements-dev.lock": ("dependencies", "dev")}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """``{name: [(version, marker)]}`` and the names of pins without a hash."""
    pins: dict[str, list[tuple[str, str]]] = {}
    unhashed: list[str] = []
    current = None
    for line in path.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            if current and not current[1]:
                unhashed.append(current[0])
            name = canonical(match[1])
            pins.setdefault(name, []).append((match[2], (match[3] or "").strip()))
            current = [name, False]
        elif line.strip().startswith("--hash=sha256:") and current:
            current[1] = True
        elif line.strip() and not line.lstrip().startswith("#") and not line.startswith(" "):
            raise SystemExit(f"{path.name}: unexpected line {line!r}")
    if current and not current[1]:
        unhashed.append(current[0])
    return pins, unhashed


def requirements(groups: tuple[str, ...]) -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) if "dependencies" in groups else []
    for group in groups:
        if group != "dependencies":
            reqs += project.get("optional-dependencies", {}).get(group, [])
    return reqs


def problems() -> list[str]:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    found = []
    for lock_name, groups in LOCKS.items():
        path = ROOT / lock_name
        if not path.is_file():
            found.append(f"{lock_name} is missing")
            continue
        pins, unhashed = read_lock(path)
        found += [f"{lock_name}: {name} has no --hash" for name in unhashed]
        for requirement in requirements(groups):
            match = _REQ.match(requirement)
            name, spec = canonical(match[1]), SpecifierSet(match[2].strip())
            versions = [version for version, _marker in pins.get(name, [])]
            if not versions:
                found.append(f"{lock_name}: {requirement!r} is not pinned")
            elif not any(Version(v) in spec for v in versions):
                found.append(f"{lock_name}: {name}=={versions[0]} does not satisfy {requirement!r}")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print("The lock files do not match pyproject.toml: run `make lock`.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
