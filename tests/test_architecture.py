"""The layering rules of ARCHITECTURE.md, checked on the source: imports point one way."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HTTP_LAYER = ("rest_framework", "drf_spectacular", "removal.api", "django.http",
              "django.shortcuts", "django.views")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "removal" / "services").glob("*.py"))
                         + [ROOT / "removal" / "selectors.py"], ids=lambda p: p.name)
def test_services_and_selectors_import_nothing_from_the_http_layer(path):
    found = {name for name in imported_modules(path) if name.startswith(HTTP_LAYER)}
    assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"


@pytest.mark.parametrize("path", sorted((ROOT / "removal" / "pipeline").glob("*.py")),
                         ids=lambda p: p.name)
def test_the_pipeline_imports_no_django(path):
    found = {name for name in imported_modules(path)
             if name.startswith("django") or (name.startswith("removal.")
                                              and not name.startswith(("removal.pipeline",
                                                                       "removal.errors",
                                                                       "removal.modelstore")))}
    assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}"


def test_no_module_outside_the_tests_is_over_400_lines():
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    long = {name: n for name in files if not name.startswith("tests/")
            and (n := len((ROOT / name).read_text().splitlines())) > 400}
    assert not long, long


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "accounts").rglob("*.py")
                                        if "migrations" not in p.parts),
                         ids=lambda p: str(p.relative_to(ROOT / "accounts")))
def test_accounts_imports_nothing_from_removal(path):
    """accounts is the lower app (ARCHITECTURE.md, "The two apps")."""
    found = {name for name in imported_modules(path) if name.split(".")[0] == "removal"}
    assert not found, (f"{path.relative_to(ROOT)} imports {sorted(found)}: accounts is below "
                       "removal; move what it needs into accounts and re-export it in removal")
