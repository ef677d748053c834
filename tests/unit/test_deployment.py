"""The production-like compose file is one that `docker compose` accepts,
and it runs every part of Kezek behind health checks."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kezek.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, POSTGRES_PASSWORD="p", KEZEK_SECRET_KEY="s", KEZEK_PSEUDONYM_KEY="k")


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
    for role in ("worker", "relay", "consume", "migrate"):
        assert (role,) in commands


def test_every_http_service_has_a_readiness_health_check(compose):
    for name in SERVICES:
        check = compose["services"][name]["healthcheck"]["test"]
        assert any("/ready" in part for part in check), name


def test_services_start_only_after_migrations_and_healthy_infrastructure(compose):
    for name in (*SERVICES, "worker", "relay", "consumers"):
        deps = compose["services"][name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["temporal"]["condition"] == "service_healthy"


def test_temporal_persists_to_postgresql(compose):
    temporal = compose["services"]["temporal"]
    assert temporal["environment"]["DB"].startswith("postgres")
    assert temporal["depends_on"]["postgres"]["condition"] == "service_healthy"
