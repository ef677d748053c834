"""Backups (issue 20, item 6): `kezek backup DIR` of a deployment that holds
a family with a referral, a sealed scan and (on SQLite, as `kezek run` has
it) the Temporal development server's history; `kezek restore DIR` into a
fresh state folder (fresh databases on PostgreSQL) with the same data keys;
then the services started there serve the same family and referral, the
scan opens, and Temporal there knows the workflow. A restore over data is
refused, and so is one without the keys the backup was sealed under."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from fastapi.testclient import TestClient

from kezek.cli import main as kezek
from kezek.db import make_session_factory, service_engine
from kezek.infra.temporal import TemporalDevServer
from kezek.migrations import upgrade
from kezek.sealing import new_key_line
from kezek.settings import SERVICES, Settings
from services.queue.domain.commands import JoinQueue
from tests.fakes.tokens import Callers
from tests.integration.test_nothing_readable_at_rest import CHILD_PIN, EMAIL, register

pytestmark = pytest.mark.integration

KEYS = " ".join(new_key_line(k) for k in ("b2027", "b2026"))
SCAN = b"%PDF-1.4\n" + uuid.uuid4().bytes * 64


def deployment(monkeypatch, state_dir, url: str) -> Settings:
    state_dir.mkdir(parents=True, exist_ok=True)
    for name, value in (("KEZEK_STATE_DIR", str(state_dir)), ("KEZEK_DATABASE_URL", url),
                        ("KEZEK_DATA_KEYS", KEYS), ("KEZEK_ENV", "test")):
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    if request.param == "sqlite":
        return lambda prefix: ""
    cluster = request.getfixturevalue("pg_cluster")
    return lambda prefix: cluster.url(f"{prefix}_{{service}}")


async def _probe_workflow(address: str, workflow_id: str | None = None) -> str:
    """Starts a workflow no worker runs (its history is the server's data), or describes it."""
    from temporalio.client import Client

    client = await Client.connect(address)
    if workflow_id is None:
        workflow_id = f"backup-probe-{uuid.uuid4().hex[:8]}"
        await client.start_workflow("BackupProbe", id=workflow_id, task_queue="nobody-listens")
        return workflow_id
    return (await client.get_workflow_handle(workflow_id).describe()).status.name


def test_a_restore_into_a_fresh_folder_serves_the_same_family_referral_scan_and_workflow(
        backend, monkeypatch, tmp_path, capsys):
    from services.queue.runtime import build_queue
    from services.verification.files import build_files

    sqlite = backend("x") == ""
    old = deployment(monkeypatch, tmp_path / "old", backend(f"old{uuid.uuid4().hex[:6]}"))
    for service in SERVICES:
        upgrade(service, old.database_url_for(service))
    app_id = register(old)
    queue = build_queue(old)
    queue.kindergartens.save({"id": "rest-kg", "name": "Ромашка", "district": "Leninsky", "languages": ["ru"]},
                             actor="admin:1")
    with make_session_factory(service_engine(old, "registration"))() as s:
        from services.registration.models import Application
        application = s.get(Application, app_id)
        parent = application.account_id
    queue.entries.join(JoinQueue(pin=CHILD_PIN, surname="Жумабекова", name="Айдай", category="general",
                                 language="ru", preferences=("rest-kg",), parent_id=parent, application_id=app_id),
                       actor="service:registration")
    queue.places.publish("rest-kg", 2023, "ru", 1, actor="admin:1")
    [referral] = queue.allocation.process_requests().issued
    build_files(old).put("scans/backup-probe", SCAN, content_type="application/pdf")
    temporal = TemporalDevServer(old.state_dir).start() if sqlite else None
    try:
        workflow_id = asyncio.run(_probe_workflow(temporal.address)) if temporal else None
        assert kezek(["backup", str(tmp_path / "backup")]) == 0     # while the services and Temporal run
    finally:
        if temporal:
            temporal.stop()
    backup_files = b"".join(p.read_bytes() for p in (tmp_path / "backup").rglob("*") if p.is_file())
    assert CHILD_PIN.encode() not in backup_files and SCAN[16:80] not in backup_files   # sealed in the backup too

    new = deployment(monkeypatch, tmp_path / "new", backend(f"new{uuid.uuid4().hex[:6]}"))
    capsys.readouterr()
    assert kezek(["restore", str(tmp_path / "backup")]) == 0
    assert "temporal" in capsys.readouterr().out or not sqlite
    assert kezek(["restore", str(tmp_path / "backup")]) == 1               # over data: refused
    assert "already holds data" in capsys.readouterr().err

    from services.queue.api import create_app as queue_app
    from services.registration.api import create_app as registration_app

    with TestClient(registration_app(new)) as reg, TestClient(queue_app(new)) as q:
        copy = reg.get("/api/v1/me/copy", headers=Callers(new, "registration").parent(parent))
        assert copy.status_code == 200, copy.text
        assert copy.json()["account"]["email"] == EMAIL
        assert [a["child"]["pin"] for a in copy.json()["applications"]] == [CHILD_PIN]
        entry = q.get(f"/api/v1/queue-entries/{app_id}", headers=Callers(new, "queue").parent(parent))
        assert entry.status_code == 200, entry.text
        assert entry.json()["status"] == "referred"
        assert str(entry.json()["referral"]["id"]) == str(referral.referral_id)
    assert build_files(new).get("scans/backup-probe") == SCAN
    if sqlite:
        restored = TemporalDevServer(new.state_dir).start()
        try:
            assert asyncio.run(_probe_workflow(restored.address, workflow_id)) == "RUNNING"
        finally:
            restored.stop()

    other_keys = deployment(monkeypatch, tmp_path / "other", backend(f"oth{uuid.uuid4().hex[:6]}"))
    monkeypatch.setenv("KEZEK_DATA_KEYS", new_key_line("elsewhere"))
    assert kezek(["restore", str(tmp_path / "backup")]) == 1
    assert "do not hold" in capsys.readouterr().err
    assert not (other_keys.state_dir / "queue.db").exists()
