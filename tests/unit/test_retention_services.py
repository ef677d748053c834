"""Retention in every service that holds the family's data (kezek/retention.py):
each learns that an application closed from application.closed.v1, keeps
its own clock, and anonymises its own data in place when its period ends,
audited; a granted erasure does the same at once."""
from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kezek.db import make_session_factory, unit_of_work
from kezek.events import new_event
from kezek.files import FolderStore, SealedFiles
from kezek.retention import ANONYMISED, CLOSED, ERASURE_GRANTED, anonymous_pin
from kezek.sealing import Keyring
from tests.builders import Clock, migrated, sqlite_url

CLOSED_AT = datetime(2027, 3, 1, 4, tzinfo=UTC)
LATER = CLOSED_AT + timedelta(days=1095)


def closed_event(app_id="a1", parent="acc-1", outcome="removed"):
    return new_event(CLOSED, f"application:{app_id}", {"application_id": app_id, "parent_id": parent,
                                                        "outcome": outcome, "closed_at": CLOSED_AT.isoformat()},
                     source="queue")


def erasure_event(app_id="a1", parent="acc-1", outcome="removed"):
    return new_event(ERASURE_GRANTED, f"application:{app_id}", {
        "application_id": app_id, "parent_id": parent, "outcome": outcome, "closed_at": CLOSED_AT.isoformat(),
        "granted_at": (CLOSED_AT + timedelta(days=2)).isoformat()}, source="queue")


@pytest.fixture
def database(tmp_path):
    """Opens a service's migrated SQLite database (its sessions), closed after the test."""
    with ExitStack() as opened:
        def open_(service):
            return make_session_factory(opened.enter_context(migrated(service, sqlite_url(tmp_path, service))))
        yield open_


def consume(job, event):
    with unit_of_work(job.sessions) as s:
        (job.closed if event.type == CLOSED else job.erasure_granted)(s, event)


def run_after(job, clock, *events, at=LATER):
    """The job's run at `at`, once it has heard `events`."""
    for event in events:
        consume(job, event)
    clock.now = at
    return job.run()


# ------------------------------------------------------------- registration


@pytest.fixture
def registration(database):
    from services.registration.models import Account, Application, Draft, Session
    from services.registration.retention import retention_job

    sessions = database("registration")
    clock = Clock(CLOSED_AT)
    with unit_of_work(sessions) as s:
        s.add(Account(id="acc-1", email="aigul@example.kg", pin="12345678901234", surname="Asanova",
                      name="Aigul", phone="+996700123456", locale="ky", created_at=CLOSED_AT,
                      password_hash="argon2$x", tunduk_sub="sub-1"))
        for app_id, pin in (("a1", "21506202400011"), ("a2", "21506202200012")):
            s.add(Application(
                id=app_id, account_id="acc-1", country="KG", child_pin=pin, child_surname="Asanov",
                child_name="Aibek", child_patronymic="Bekovich", child_birth_date=date(2024, 6, 15), child_sex="male",
                parent={"role": "mother", "surname": "Asanova", "pin": "12345678901234",
                        "document": {"number": "ID123"}},
                address={"region": "41702", "district": "41702100", "street": "s1", "house": "5", "flat": "7",
                         "names": {"ru": "Бишкек, ул. Токтогула 5, 7"}},
                phone="+996700123456", email="aigul@example.kg", category="general", language="ru",
                preferences=["sun"], status="submitted", submitted_at=CLOSED_AT))
        s.add(Draft(token_hash="d1", country="KG", locale="ky", child={"pin": "21506202400011"}, parent={}, address={},
                    application_id="a1", created_at=CLOSED_AT, updated_at=CLOSED_AT))
        s.add(Session(token_hash="s1", account_id="acc-1", kind="cookie", via="password", created_at=CLOSED_AT,
                      expires_at=CLOSED_AT + timedelta(days=1)))
    return retention_job(sessions, now=clock), clock, sessions


def test_registration_anonymises_the_application_and_keeps_the_account_while_another_is_open(registration):
    from services.registration.models import Account, Application, Draft

    job, clock, sessions = registration
    assert run_after(job, clock, closed_event("a1")).by_outcome == {"removed": 1}
    with sessions() as s:
        a = s.get(Application, "a1")
        assert (a.child_pin, a.child_surname, a.child_name, a.child_patronymic, a.child_sex) == (
            anonymous_pin("a1"), ANONYMISED, ANONYMISED, None, None)
        assert a.child_birth_date == date(2024, 1, 1) and (a.phone, a.email) == ("", "")
        assert a.parent == {"role": "mother"} and a.address == {"region": "41702", "district": "41702100"}
        assert (a.category, a.preferences) == ("general", ["sun"])
        assert s.get(Draft, "d1") is None
        assert s.get(Account, "acc-1").email == "aigul@example.kg"       # a2 is still open
        assert s.get(Application, "a2").child_pin == "21506202200012"


def test_registration_anonymises_the_account_with_the_parents_last_application(registration):
    from services.registration.models import Account, Session

    job, clock, sessions = registration
    report = run_after(job, clock, closed_event("a1"), closed_event("a2", outcome="aged_out"))
    assert report.by_outcome == {"removed": 1, "aged_out": 1} and report.tables["accounts"] == 1
    with sessions() as s:
        acc = s.get(Account, "acc-1")
        assert acc.email == "acc-1@anonymised.invalid" and acc.pin == anonymous_pin("acc-1")
        assert (acc.surname, acc.phone, acc.tunduk_sub, acc.password_hash) == (ANONYMISED, "", None, None)
        assert s.scalars(sa.select(Session)).all() == []


def test_a_granted_erasure_anonymises_at_once_and_is_audited_as_one(registration):
    from services.registration.models import Application, trail

    job, clock, sessions = registration
    consume(job, erasure_event("a1"))       # before its closing was even heard of
    with sessions() as s:
        assert s.get(Application, "a1").child_pin == anonymous_pin("a1")
        [row] = trail.trail(s, subject="application:a1")
    assert row["action"] == "retention.anonymised" and row["details"]["erasure"] is True
    assert row["actor"] == "service:registration"
    assert job.run().by_outcome == {}


# ------------------------------------------------------------- verification


@pytest.fixture
def verification(database, tmp_path):
    from services.verification.bootstrap import build_ingest
    from services.verification.models import Certificate, Scan
    from services.verification.retention import retention_job

    sessions = database("verification")
    files = SealedFiles(FolderStore(tmp_path / "files"), Keyring.development())
    clock = Clock(CLOSED_AT)
    ingest = build_ingest()
    events = [
        new_event("application.submitted.v1", "application:a1", {
            "application_id": "a1", "parent_id": "acc-1", "country": "KG", "child_pin": "21506202400011",
            "child_birth_date": "2024-06-15", "child_surname": "Asanov", "child_name": "Aibek",
            "category": "extraordinary", "queue_date": "2026-01-10T04:00:00Z", "language": "ru",
            "preferences": ["sun"], "locale": "ru"}, source="registration"),
        new_event("application.received.v1", "application:a1", {
            "application_id": "a1", "parent_id": "acc-1", "locale": "ru", "email": "aigul@example.kg",
            "phone": "+996700123456", "queue_date": "2026-01-10T04:00:00Z"}, source="registration"),
        new_event("referral.issued.v1", "referral:7", {
            "referral_id": "7", "application_id": "a1", "kindergarten_id": "sun", "needs_confirmation": True,
            "category": "extraordinary", "cohort": 2024, "language": "ru",
            "deadline": "2026-02-01T18:00:00Z"}, source="queue"),
    ]
    with unit_of_work(sessions) as s:
        for e in events:
            ingest(s, e)
        for sha, ref in (("f" * 64, "7"), ("e" * 64, "7")):
            files.put(f"scans/{sha[:8]}", b"%PDF")
            s.add(Scan(sha256=sha, content_type="application/pdf", size=4, file_name=f"scans/{sha[:8]}",
                       stored_at=CLOSED_AT))
        s.flush()
        s.add(Certificate(id="c1", referral_id="7", organisation="Military unit 123", number="N-55",
                          issued_on=date(2026, 1, 20), scan_sha256="f" * 64, scan_name="certificate.pdf",
                          recorded_by="staff-1", recorded_at=CLOSED_AT))
        # A sibling's certificate, still kept, shows the same second file.
        s.add(Certificate(id="c2", referral_id="7", organisation="Military unit 123", number="N-56",
                          issued_on=date(2026, 1, 20), scan_sha256="e" * 64, scan_name="same.pdf",
                          recorded_by="staff-1", recorded_at=CLOSED_AT))
        s.add(Certificate(id="c3", referral_id="99", organisation="Military unit 123", number="N-57",
                          issued_on=date(2026, 1, 20), scan_sha256="e" * 64, scan_name="same.pdf",
                          recorded_by="staff-1", recorded_at=CLOSED_AT))
    return retention_job(sessions, files, now=clock), clock, sessions, files


def test_verification_anonymises_the_case_and_blanks_the_scans_no_kept_case_shows(verification):
    from services.verification.models import Applicant, Certificate, Scan

    job, clock, sessions, files = verification
    assert run_after(job, clock, closed_event("a1", outcome="aged_out")).by_outcome == {"aged_out": 1}
    with sessions() as s:
        a = s.get(Applicant, "a1")
        assert (a.child_pin, a.child_surname, a.parent_phone, a.parent_email) == (
            anonymous_pin("a1"), ANONYMISED, None, None)
        assert a.child_birth_date == date(2024, 1, 1) and a.category == "extraordinary"
        c1 = s.get(Certificate, "c1")
        assert (c1.organisation, c1.number, c1.scan_name) == (ANONYMISED, ANONYMISED, "")
        assert s.get(Scan, "f" * 64).size == 0 and not files.store.exists("scans/ffffffff")
        assert files.get("scans/eeeeeeee") == b"%PDF"          # c3 (another child's, kept) shows it
        assert s.get(Certificate, "c3").number == "N-57"


def test_verifications_audit_trail_is_rewritten_only_through_its_gate(verification):
    from services.verification.models import audit_trail
    from kezek.trust import Principal

    job, clock, sessions, _files = verification
    with unit_of_work(sessions) as s:
        audit_trail.record(s, Principal(actor="staff:1", role="caseworker"), "case.viewed", "referral:7",
                           details={"reason": "parent Asanova called", "state": "awaiting_confirmation"})
    with pytest.raises(Exception, match="append-only"):
        with unit_of_work(sessions) as s:
            s.execute(sa.update(audit_trail.table).values(details={}))
    consume(job, erasure_event("a1", outcome="aged_out"))
    with sessions() as s:
        [viewed] = [r for r in audit_trail.trail(s, subject="referral:7") if r["action"] == "case.viewed"]
    assert viewed["details"] == {"reason": ANONYMISED, "state": "awaiting_confirmation"}
    assert viewed["actor"] == "staff:1"
    with pytest.raises(Exception, match="append-only"):      # the gate closed again
        with unit_of_work(sessions) as s:
            s.execute(sa.update(audit_trail.table).values(details={}))


# ------------------------------------------------------------ notifications


@pytest.fixture
def notifications(database):
    from services.notifications.retention import retention_job
    from services.notifications.service import NotificationService

    sessions = database("notifications")
    clock = Clock(CLOSED_AT)
    service = NotificationService(sessions, tz=ZoneInfo("Asia/Bishkek"), cabinet_url="https://kezek.kg/cabinet",
                                  clock=clock)
    for app_id in ("a1", "a2"):
        with unit_of_work(sessions) as s:
            service.handle(s, new_event("application.received.v1", f"application:{app_id}", {
                "application_id": app_id, "parent_id": "acc-1", "locale": "ru", "email": "aigul@example.kg",
                "phone": "+996700123456", "queue_date": "2026-01-10T04:00:00Z", "child_name": "Айбек"},
                source="registration"))
    return retention_job(sessions, now=clock), clock, sessions


def test_notifications_blank_the_messages_and_forget_the_contacts_with_the_last_application(notifications):
    from services.notifications.models import Contact, Message

    job, clock, sessions = notifications
    run_after(job, clock, closed_event("a1"))
    with sessions() as s:
        m = s.scalars(sa.select(Message).where(Message.application_id == "a1")).first()
        assert (m.address, m.body, m.subject, m.params) == ("", "", None, None) and m.kind == "application_received"
        assert "Айбек" in (s.scalars(sa.select(Message.params).where(Message.application_id == "a2",
                                                                      Message.channel == "inapp")).first() or "")
        assert "Айбек" in s.scalars(sa.select(Message.body).where(Message.application_id == "a2")).first()
        assert s.get(Contact, "acc-1").email == "aigul@example.kg"
    run_after(job, clock, closed_event("a2"), at=LATER + timedelta(days=1))
    with sessions() as s:
        c = s.get(Contact, "acc-1")
        assert (c.email, c.phone) == (None, None)


# ------------------------------------------------------------------ gateway


def test_the_gateway_forgets_the_chart_the_voucher_reason_and_the_projections_keys(database):
    from services.gateway.models import PositionPoint, VoucherDecision
    from services.gateway.public.models import PublicChild
    from services.gateway.retention import retention_job

    sessions = database("gateway")
    with unit_of_work(sessions) as s:
        s.add(PositionPoint(event_id="e1", application_id="a1", kindergarten_id="sun", position=3, at=CLOSED_AT))
        s.add(PositionPoint(event_id="e2", application_id="b1", kindergarten_id="sun", position=4, at=CLOSED_AT))
        s.add(VoucherDecision(application_id="a1", event_id="e3", decision="rejected", decision_number=1,
                              reason="income of Asanova too high", decided_at=CLOSED_AT))
        s.add(PublicChild(application_id="a1", child_ref="f" * 32, cohort=2024))
    clock = Clock(CLOSED_AT)
    job = retention_job(sessions, now=clock)
    report = run_after(job, clock, closed_event("a1"))
    assert report.tables == {"position_points": 1, "voucher_decisions": 1, "public_children": 1}
    with sessions() as s:
        assert [p.application_id for p in s.scalars(sa.select(PositionPoint))] == ["b1"]
        v = s.get(VoucherDecision, "a1")
        assert (v.decision, v.reason) == ("rejected", "")
