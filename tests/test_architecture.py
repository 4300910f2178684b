"""The layering rules of ARCHITECTURE.md, checked on the source: imports point one way, only
the services write rows, and the tests mirror the code. One test per rule; each failure says
which file broke which rule."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REMOVAL = ROOT / "removal"
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


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "accounts").rglob("*.py")
                                        if "migrations" not in p.parts),
                         ids=lambda p: str(p.relative_to(ROOT / "accounts")))
def test_accounts_imports_nothing_from_removal(path):
    """accounts is the lower app (ARCHITECTURE.md, "The two apps")."""
    found = {name for name in imported_modules(path) if name.split(".")[0] == "removal"}
    assert not found, (f"{path.relative_to(ROOT)} imports {sorted(found)}: accounts is below "
                       "removal; move what it needs into accounts and re-export it in removal")


def python_files(*parts: str) -> list[Path]:
    """The modules under ``ROOT / parts`` (a folder, recursively, or one file), no migrations."""
    where = ROOT.joinpath(*parts)
    files = sorted(where.rglob("*.py")) if where.is_dir() else [where]
    return [path for path in files if "migrations" not in path.parts]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


# The three surfaces: HTTP, the staff admin, the operators' commands.
SURFACES = {
    "removal.api": python_files("removal", "api"),
    "removal.admin": python_files("removal", "admin") + python_files("removal", "admin_views.py"),
    "removal.management": python_files("removal", "management"),
}


@pytest.mark.parametrize(("surface", "path"), [(name, path) for name, files in SURFACES.items()
                                               for path in files],
                         ids=lambda value: value.name if isinstance(value, Path) else value)
def test_api_admin_and_commands_never_import_each_other(surface, path):
    others = tuple(name for name in SURFACES if name != surface)
    others += ("removal.admin_views",) if surface != "removal.admin" else ()
    found = {name for name in imported_modules(path) if name.startswith(others)}
    assert not found, (f"{path.relative_to(ROOT)} ({surface}) imports {sorted(found)}: the "
                       "API, the admin and the commands call services and selectors, never "
                       "each other")


# Who may not import whom on a task's path (jobs -> runner -> pipeline; worker -> reconcile,
# queue): nothing calls back up.
NEVER_UP = {
    "removal/runner.py": ("removal.jobs", "removal.worker", "removal.reconcile"),
    "removal/jobs.py": ("removal.worker", "removal.reconcile"),
    "removal/reconcile.py": ("removal.jobs", "removal.runner", "removal.worker"),
    "removal/queue.py": ("removal.jobs", "removal.runner", "removal.worker", "removal.reconcile",
                         "removal.services"),
}


@pytest.mark.parametrize("name", sorted(NEVER_UP))
def test_the_task_path_never_imports_upwards(name):
    found = {module for module in imported_modules(ROOT / name)
             if module.startswith(NEVER_UP[name])}
    assert not found, (f"{name} imports {sorted(found)}: the task path is jobs -> runner -> "
                       "pipeline and worker -> reconcile, queue; nothing calls back up")


@pytest.mark.parametrize(("name", "needs"), [
    ("removal/jobs.py", "removal.runner"),
    ("removal/runner.py", "removal.pipeline"),
    ("removal/reconcile.py", "removal.services.tasks"),
    ("removal/worker.py", "removal.reconcile"),
    ("removal/worker.py", "removal.queue"),
])
def test_the_task_path_goes_through_its_next_layer(name, needs):
    assert any(module.startswith(needs) for module in imported_modules(ROOT / name)), (
        f"{name} no longer imports {needs}: update ARCHITECTURE.md's layering rules if the "
        "task path changed")


def model_writes(path: Path) -> set[tuple[int, str]]:
    """``(line, "Model.method")`` for every write spelt on a model class of ``removal.models``:
    ``Task.objects.filter(...).update(...)``, ``Upload.objects.create(...)`` and so on. (A
    ``save()`` on an instance is not seen: which model an instance is, the AST cannot tell.)"""
    models = {node.name for node in ast.parse((REMOVAL / "models.py").read_text()).body
              if isinstance(node, ast.ClassDef)}
    writes = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in WRITE_METHODS):
            continue
        root = node.func.value
        while isinstance(root, (ast.Attribute, ast.Call, ast.Subscript)):
            root = root.func if isinstance(root, ast.Call) else root.value
        if isinstance(root, ast.Name) and root.id in models:
            writes.add((node.lineno, f"{root.id}.{node.func.attr}"))
    return writes


WRITE_METHODS = {"create", "bulk_create", "get_or_create", "update_or_create", "update",
                 "bulk_update", "delete", "save"}
# The API's own Idempotency-Key records (ARCHITECTURE.md: the one exception).
MAY_WRITE = {"removal/api/idempotency.py": {"IdempotencyKey"}}


@pytest.mark.parametrize("path", [path for path in python_files("removal")
                                  if "services" not in path.relative_to(REMOVAL).parts],
                         ids=lambda path: str(path.relative_to(REMOVAL)))
def test_only_the_services_write_rows(path):
    allowed = MAY_WRITE.get(str(path.relative_to(ROOT)), set())
    found = sorted(f"line {line}: {call}" for line, call in model_writes(path)
                   if call.split(".")[0] not in allowed)
    assert not found, (f"{path.relative_to(ROOT)} writes rows itself ({found}): call a "
                       "function of removal/services/ instead")


def test_only_the_services_write_rows_catches_a_write():
    """The rule above sees the writes it is meant to refuse."""
    sample = ROOT / "removal" / "services" / "tasks.py"
    assert any(call.startswith("Task.") for _, call in model_writes(sample))


def test_tests_mirror_the_code():
    """Tests live in the folder of what they exercise (ARCHITECTURE.md, "Where a new feature
    goes"); only this file stays at the top of tests/."""
    flat = sorted(path.name for path in (ROOT / "tests").glob("test_*.py")
                  if path.name != "test_architecture.py")
    assert not flat, (f"flat test files {flat}: move each test into tests/api, tests/services, "
                      "tests/selectors, tests/pipeline, tests/jobs, tests/commands, "
                      "tests/admin, tests/e2e, tests/readme, ... by the module it exercises")
    unimportable = sorted(str(folder.relative_to(ROOT)) for folder in (ROOT / "tests").iterdir()
                          if folder.is_dir() and any(folder.glob("test_*.py"))
                          and not (folder / "__init__.py").exists())
    assert not unimportable, f"test folders without __init__.py: {unimportable}"


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
