"""No PIN, document number, contact or scan is readable at rest (DOMAIN.md
section 7): a family registers, its events travel through Kafka to every
service's consumer, the child gets a referral that needs its privilege
confirmed, a caseworker records the certificate with its scan; then each
service's database is dumped (pg_dump on PostgreSQL; the SQLite files with
their write-ahead logs) together with the file store, and none of the
child's or parent's PIN, the identity document's or the certificate's
number, the parent's phone and e-mail, the child's surname nor the scan's
bytes is found in it. The services themselves still show all of it."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from kezek import wiring
from kezek.db import make_session_factory, service_engine
from kezek.infra.kafka import ensure_topics
from kezek.infra.postgres import pg_bin
from kezek.migrations import upgrade
from kezek.outbox import payloads
from kezek.relay import OutboxRelay
from kezek.sealing import new_key_line
from kezek.settings import SERVICES, Settings

pytestmark = pytest.mark.integration

CHILD_PIN, PARENT_PIN = "20101202300731", "11203199000731"
DOCUMENT, CERTIFICATE = "AN7310731", "SPR-731-0731"
PHONE, EMAIL, SURNAME = "+996555731073", "sealed.family@example.kg", "Жумабекова"
DISTRICT = "41711210000000"
SCAN_MARK = os.urandom(48)
SCAN = b"%PDF-1.4\n%" + SCAN_MARK + b"\n" + b"0" * 2000 + b"\n%%EOF\n"


def wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request, tmp_path, kafka_bootstrap) -> Settings:
    prefix = f"rest{uuid.uuid4().hex[:8]}"
    url = ""
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        url = cluster.url(f"{prefix}_{{service}}")
    s = Settings(_env_file=None, state_dir=tmp_path / "state", database_url=url, kafka_bootstrap=kafka_bootstrap,
                 kafka_topic_prefix=prefix, data_keys=new_key_line("t1"))
    s.state_dir.mkdir(parents=True)
    for service in SERVICES:
        upgrade(service, s.database_url_for(service), settings=s)
    ensure_topics(kafka_bootstrap, [s.topic(a) for a in ("application", "referral", "account", "registration",
                                                         "place", "notification", "verification")])
    return s


def register(settings: Settings) -> str:
    from services.registration.address import ReferenceAddressRegistry
    from services.registration.service import RegistrationService

    svc = RegistrationService(make_session_factory(service_engine(settings, "registration")),
                              ReferenceAddressRegistry(), code_key=settings.secret_key.get_secret_value().encode(),
                              hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
    token = svc.start_draft("ru")
    svc.save_child(token, {"pin": CHILD_PIN, "surname": SURNAME, "name": "Айдай"})
    svc.save_parent(token, {
        "role": "mother", "surname": SURNAME, "name": "Гүлнара", "pin": PARENT_PIN, "document_type": "passport",
        "document_number": DOCUMENT, "document_issued_on": "2020-05-01",
        "address": {"region": "41711000000000", "district": DISTRICT, "settlement": "41711000000001",
                    "street": "Киевская", "house": "12"}, "phone": PHONE, "email": EMAIL})
    svc.request_code(token)
    sealed = json.loads(payloads(svc.sessions.kw["bind"], "registration.email_code_issued.v1")[-1])["data"]["sealed"]
    svc.verify_code(token, svc.sealer.open("registration.email_code_issued.v1", "code", sealed["code"]))
    done = svc.submit(token, {"category": "extraordinary", "language": "ru", "preferences": ["rest-kg"],
                              "agreement": True})
    assert svc.profile(done.account_id)["applications"][0]["child"]["pin"] == CHILD_PIN
    return done.application_id


def relay_all(settings: Settings) -> None:
    for service in SERVICES:
        engine = service_engine(settings, service)
        relay = OutboxRelay(make_session_factory(engine), wiring._part(service, "models", "outbox"),
                            settings.kafka_bootstrap, settings.kafka_topic_prefix)
        while relay.relay_once():
            pass
        relay.close()
        engine.dispose()


def consume(consumers, until, what: str, settings: Settings) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        relay_all(settings)
        for c in consumers:
            c.poll_once(200)
        if until():
            return
    raise AssertionError(f"{what}: not consumed within 180 s")


def dump(settings: Settings, service: str) -> bytes:
    url = settings.database_url_for(service)
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(f"{path.name}*"))
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return subprocess.run([str(pg_bin() / "pg_dump"), "-h", u.host, "-p", str(u.port), "-U", u.username or "postgres",
                           "--no-owner", u.database], capture_output=True, check=True).stdout


async def test_no_pin_document_contact_or_scan_is_readable_in_any_database_dump(
        settings, temporal_dev, temporal_namespace):
    from services.queue.activities import WorkflowStarter
    from services.queue.runtime import build_queue
    from services.verification import bootstrap
    from tests.fakes.verification import FakeReferrals
    from workflows import contracts as wc
    from workflows.worker import build_worker, connect

    queue = build_queue(settings)
    queue.kindergartens.save({"id": "rest-kg", "name": "Ромашка", "district": "Leninsky", "languages": ["ru"]},
                             actor="admin:1")
    app_id = register(settings)
    consumers = wiring.consumers(settings, ("queue", "verification", "notifications", "gateway"))
    client = await connect(temporal_dev.address, temporal_namespace)
    task_queue = f"referrals-{settings.kafka_topic_prefix}"
    worker = build_worker(client, wiring.activities(settings), task_queue=task_queue)
    try:
        verification = bootstrap.build(settings, referrals=FakeReferrals(),
                                       hasher=PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
        await asyncio.to_thread(consume, consumers, lambda: _entry(queue, app_id), "the child's queue entry",
                                settings)
        queue.places.publish("rest-kg", 2023, "ru", 1, actor="admin:1")
        [ref] = queue.allocation.process_requests().issued
        async with worker:
            # The allocation announced the referral (referral.issued, in the queue's outbox); its workflow starts.
            assert await WorkflowStarter(queue, address=temporal_dev.address, namespace=temporal_namespace,
                                         task_queue=task_queue).start_pending(client) == 1
            verification.staff.add("aida", "Аида Caseworker", "caseworker", DISTRICT, "caseworker password 2027")
            _, staff = verification.staff.login("aida", "caseworker password 2027")
            await asyncio.to_thread(consume, consumers, lambda: _case(verification, staff, str(ref.referral_id)),
                                    "the referral's case", settings)
        today = verification.ctx.today()
        verification.certificates.record(staff, str(ref.referral_id), organisation="В/ч 31073",
                                         number=CERTIFICATE, issued_on=(today - timedelta(days=1)).strftime("%d.%m.%Y"),
                                         scan=SCAN, scan_name=f"{SURNAME}.pdf")
        case = verification.cases.case(staff, str(ref.referral_id))
        assert (case["child_pin"], case["parent_phone"], case["certificate"]["number"]) == (
            CHILD_PIN, PHONE, CERTIFICATE)
        cert_id = case["certificate"]["id"]
        assert verification.certificates.scan(staff, str(ref.referral_id), cert_id)[0] == SCAN
        await asyncio.to_thread(consume, consumers, lambda: _messages(settings), "the parent's messages", settings)
        # Referral ids start at 1 in every fresh database: end this one's workflow
        # (the dev server is shared by the session).
        await client.get_workflow_handle(wc.workflow_id(str(ref.referral_id))).terminate("test over")
    finally:
        for c in consumers:
            c.close()

    needles = {"child PIN": CHILD_PIN.encode(), "parent PIN": PARENT_PIN.encode(),
               "document number": DOCUMENT.encode(), "certificate number": CERTIFICATE.encode(),
               "phone": PHONE.encode(), "phone digits": PHONE[1:].encode(), "e-mail": EMAIL.encode(),
               "surname": SURNAME.encode(), "scan": SCAN_MARK, "scan (hex)": SCAN_MARK.hex().encode()}
    found = {}
    # What names nobody stays in clear: the dumps do show the rows.
    in_clear = {"registration": app_id.encode(), "queue": b"rest-kg", "verification": DISTRICT.encode(),
                "notifications": app_id.encode(), "gateway": b"audit_trail"}
    for service in SERVICES:
        raw = dump(settings, service)
        assert in_clear[service] in raw, f"{service}: the dump shows no row"
        found.update({f"{service}: {what}": True for what, needle in needles.items() if needle in raw})
    files = b"".join(p.read_bytes() for p in settings.state_dir.rglob("*") if p.is_file() and "files" in p.parts)
    assert len(files) > len(SCAN), "the scan is in the file store"
    found.update({f"file store: {what}": True for what, needle in needles.items() if needle in files})
    assert not found, f"readable at rest: {sorted(found)}"


def _entry(queue, app_id: str) -> bool:
    try:
        return queue.views.application(app_id)["status"] == "queued"
    except Exception:
        return False


def _case(verification, staff, referral_id: str) -> bool:
    try:
        return verification.cases.case(staff, referral_id)["open"]
    except Exception:
        return False


def _messages(settings: Settings) -> bool:
    from services.notifications.models import Message
    from sqlalchemy import func, select

    engine = service_engine(settings, "notifications")
    try:
        with engine.connect() as c:
            return c.scalar(select(func.count()).select_from(Message)) >= 2
    finally:
        engine.dispose()
