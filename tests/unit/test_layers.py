"""The shape a newcomer can read (issue 17). The core depends on nothing that
uses it: no module under kezek/ imports a service, the workflows, the importer
or the scenario runner (the command table and kezek.wiring name them by module
name only). No production module is over 700 lines, no function over 120."""
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


PRODUCTION = ("kezek", "services", "workflows", "importer", "scenario")
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 120


def _production_modules():
    for top in PRODUCTION:
        for path in (ROOT / top).rglob("*.py"):
            if "migrations" not in path.parts:
                yield path


def test_no_module_is_longer_than_a_newcomer_can_read():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in _production_modules()
            if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_MODULE_LINES]
    assert not long, f"split these modules (at most {MAX_MODULE_LINES} lines): {long}"


def test_no_function_is_longer_than_a_screenful_or_two():
    long = []
    for path in _production_modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, f"split these functions (at most {MAX_FUNCTION_LINES} lines): {long}"


def test_only_the_gateway_serves_its_port_with_several_workers_when_told(monkeypatch):
    from kezek import wiring
    from kezek.settings import Settings

    monkeypatch.setenv("KEZEK_GATEWAY_WORKERS", "3")
    settings = Settings(_env_file=None)
    assert wiring.http_workers("gateway", settings) == 3
    assert wiring.http_workers("queue", settings) == 1
