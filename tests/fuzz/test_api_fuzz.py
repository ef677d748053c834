"""Every service's OpenAPI fuzzed by an outside client (schemathesis, over
HTTP, against the services as `kezek serve` runs them): no 5xx, and every
answer as documented (status, content type, body schema). Each service is
fuzzed twice: anonymously, and with a verified caller that each route
grants (a service token made the way the services make them). The figures
per service go to tests/artifacts/fuzz.json for the record."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from kezek import wiring
from kezek.infra.procs import free_port, stop_process, wait_until
from kezek.settings import Settings
from kezek.trust import (
    CALLERS, ServiceKeys, parent_principal, service_principal, staff_principal,
)

pytestmark = pytest.mark.integration

EXAMPLES = os.environ.get("KEZEK_FUZZ_EXAMPLES", "4")
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
ROOT = Path(__file__).resolve().parents[2]
OPENAPI = {"gateway": "/api/openapi.json"}

# A caller of each kind, for the routes that grant it (the first that holds a
# route's grant signs its requests).
CALLERS_TO_TRY = [
    staff_principal(1, "admin"),
    staff_principal(2, "operator"),
    staff_principal(3, "caseworker", district="Bishkek/Leninsky"),
    staff_principal(4, "supervisor", district="Bishkek/Leninsky"),
    staff_principal(5, "commission"),
    staff_principal(6, "kindergarten", kindergarten="fuzz-kg"),
    staff_principal(7, "district", district="Bishkek/Leninsky"),
    parent_principal("fuzz-family"),
    *(service_principal(c) for c in CALLERS),
]
VOUCHER = {"parent": "gateway", "service": None}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, temporal_dev):
    state = tmp_path_factory.mktemp("fuzz")
    ports = {s: free_port() for s in wiring.services_with_api()}
    env = dict(os.environ, KEZEK_STATE_DIR=str(state), KEZEK_DATABASE_URL="",
               KEZEK_TEMPORAL_ADDRESS=temporal_dev.address, KEZEK_LOG_LEVEL="WARNING",
               KEZEK_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
               **{f"KEZEK_{s.upper()}_PORT": str(p) for s, p in ports.items()})
    env.pop("KEZEK_SERVICE_KEYS_DIR", None)
    subprocess.run([sys.executable, "-m", "kezek.cli", "migrate"], env=env, cwd=ROOT, check=True,
                   capture_output=True)
    procs = {}
    try:
        for service, port in ports.items():
            log = open(state / f"{service}.log", "wb")
            procs[service] = subprocess.Popen([sys.executable, "-m", "kezek.cli", "serve", service],
                                              env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True)
        for service, port in ports.items():
            wait_until(lambda p=port: _answers(f"http://127.0.0.1:{p}/health"), 120, service, procs[service])
        settings = Settings(_env_file=None, state_dir=state)
        yield {"urls": {s: f"http://127.0.0.1:{p}" for s, p in ports.items()}, "state": state,
               "settings": settings, "env": env}
    finally:
        for proc in procs.values():
            stop_process(proc)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _auth_map(service: str, settings: Settings) -> dict[str, str]:
    """For each guarded route, the bearer of a caller that its grant admits."""
    from kezek.trust import declared_routes

    keys = ServiceKeys.from_settings(settings)
    app = wiring.create_app(service, settings)
    out = {}
    for path, methods, perm in declared_routes(app):
        if perm is None or perm.public:
            continue
        who = next((c for c in CALLERS_TO_TRY if any(g.holds(c) for g in perm.grants)), None)
        if who is None:
            continue
        caller = who.service if who.role == "service" else ("gateway" if who.role == "parent" else "verification")
        token = keys.sign(caller, service, who, seconds=3600)
        for method in methods:
            out[f"{method} {path}"] = f"Bearer {token}"
    return out


def _fuzz(service: str, stack, mode: str, tmp_path: Path) -> dict:
    base = stack["urls"][service]
    report = tmp_path / f"{service}-{mode}.json"
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.fuzz.st_hooks", PYTHONPATH=str(ROOT))
    if mode == "verified":
        auth = tmp_path / f"{service}-auth.json"
        auth.write_text(json.dumps(_auth_map(service, stack["settings"])))
        env["KEZEK_FUZZ_AUTH"] = str(auth)
    cmd = [str(Path(sys.executable).parent / "st"), "run", base + OPENAPI.get(service, "/openapi.json"),
           "--url", base, "-n", EXAMPLES, "--checks", CHECKS, "--phases", "examples,coverage,fuzzing",
           "--seed", "20261205", "--no-color", "--workers", "1", "--request-timeout", "30",
           "--generation-database", "none", "--report", "json", "--report-json-path", str(report)]
    # (in the test's own folder: schemathesis keeps a cache of crashes where it runs)
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    if not report.exists():
        pytest.fail(f"schemathesis made no report:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}")
    r = json.loads(report.read_text())
    figures = {"service": service, "mode": mode, "operations": r["operations"]["tested"],
               "cases": r["test_cases"]["generated"], "failures": r["test_cases"]["unique_failures"],
               "seconds": round(r["running_time"], 1)}
    _record(figures)
    if figures["failures"] or r["errors"]:
        pytest.fail(f"{service} ({mode}): {figures}\n{done.stdout[-12000:]}")
    return figures


def _record(figures: dict) -> None:
    out = ROOT / "tests" / "artifacts" / "fuzz.json"
    out.parent.mkdir(exist_ok=True)
    found = json.loads(out.read_text()) if out.exists() else {}
    found[f"{figures['service']}/{figures['mode']}"] = figures
    out.write_text(json.dumps(found, indent=2, sort_keys=True))


FUZZED = wiring.services_with_api()


@pytest.mark.parametrize("service", FUZZED)
@pytest.mark.parametrize("mode", ["anonymous", "verified"])
def test_no_5xx_and_every_answer_as_documented(stack, service, mode, tmp_path):
    figures = _fuzz(service, stack, mode, tmp_path)
    assert figures["operations"] > 0
