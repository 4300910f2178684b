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
                         + [ROOT / "removal" / "selectors.py",
                            ROOT / "removal" / "representation.py"], ids=lambda p: p.name)
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


STORAGE_PREFIXES = ("originals/", "results/", "incoming/", "health/")


def storage_knowledge(path: Path) -> list[str]:
    """What in ``path`` only ``removal/storage.py`` may do: reach Django's storage, take a
    stored key apart (its suffix is the result's format) or spell a key's prefix."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "django.core.files.storage"):
            found.append(f"line {node.lineno}: imports {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr in {"rsplit", "split", "partition",
                                                               "rpartition", "suffix"}:
            target = node.value
            name = getattr(target, "attr", None) or getattr(target, "id", "")
            if name.endswith("key"):
                found.append(f"line {node.lineno}: {name}.{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and node.value.startswith(STORAGE_PREFIXES):
            found.append(f"line {node.lineno}: the key prefix {node.value!r}")
    return found


@pytest.mark.parametrize(
    "path", sorted(p for p in (ROOT / "removal").rglob("*.py")
                   if p.name != "storage.py" and "migrations" not in p.parts),
    ids=lambda p: str(p.relative_to(ROOT / "removal")))
def test_only_storage_builds_keys_reads_their_suffix_or_touches_default_storage(path):
    assert not storage_knowledge(path), f"{path.relative_to(ROOT)}: {storage_knowledge(path)}"


def test_the_storage_rule_catches_what_it_names(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from django.core.files.storage import default_storage\n"
                     "ext = task.result_key.rsplit('.', 1)[-1]\n"
                     "key = f'results/{task_id}.png'\n")
    assert len(storage_knowledge(probe)) == 3
