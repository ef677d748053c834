"""The core depends on nothing that uses it: no module under kezek/ imports
a service, the workflows, the importer or the scenario runner (the command
table and kezek.wiring name them by module name only)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USERS_OF_THE_CORE = ("services", "workflows", "importer", "scenario", "tests", "bench")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    return names


def test_the_core_imports_no_service_workflow_importer_or_scenario():
    offending = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in (ROOT / "kezek").rglob("*.py")
        for name in imported_modules(path)
        if name.split(".")[0] in USERS_OF_THE_CORE
    }
    assert not offending, sorted(offending)



def test_no_test_fake_lives_in_a_production_package():
    fakes = [p.relative_to(ROOT) for top in ("kezek", "services", "workflows", "importer", "scenario")
             for p in (ROOT / top).rglob("testing.py")]
    assert not fakes
