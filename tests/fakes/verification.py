"""Test helpers of the verification service: the facts other services
publish (built and validated against their schemas), fed into the read
model the way the consumer does, and a fake of the referral workflow's
updates for tests that do not run Temporal."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from kezek import calendar as kcal
from kezek.events import Event, UnknownEventType, new_event
from services.verification.consumers import CONSUMER
from services.verification.models import outbox
from workflows.client import ReferralRefused
from services.verification.readmodel.ingest import Ingest
from workflows import contracts as c
from workflows import rules

DISTRICT_A = "41711210000000"   # Bishkek, Leninsky district
DISTRICT_B = "41711220000000"   # Bishkek, Oktyabrsky district
PASSWORD = "correct horse battery"


def deliver(sessions: sessionmaker[Session], ingest: Ingest, event: Event) -> bool:
    """What the idempotent consumer does with one message."""
    with sessions() as s, s.begin():
        if not outbox.claim(s, CONSUMER, event.id):
            return False
        ingest(s, event)
    return True


def application_submitted(application_id: str, *, pin: str, surname: str = "Асанова", name: str = "Айгерим",
                          district: str = DISTRICT_A, category: str = "extraordinary",
                          queue_date: datetime | None = None, parent_id: str = "parent-1") -> Event:
    queue_date = queue_date or datetime(2025, 9, 1, 4, 0, tzinfo=UTC)
    birth = date(int(pin[5:9]), int(pin[3:5]), int(pin[1:3]))
    return new_event("application.submitted.v1", application_id, {
        "application_id": application_id, "parent_id": parent_id, "country": "KG", "child_pin": pin,
        "child_birth_date": birth.isoformat(), "child_sex": "female" if pin[0] == "1" else "male",
        "child_surname": surname, "child_name": name, "child_patronymic": None, "category": category,
        "queue_date": queue_date.isoformat(), "language": "ru", "preferences": ["kg-sun"],
        "region": "41711000000000", "district": district, "lat": None, "lon": None, "locale": "ru",
    }, source="registration", time=queue_date)


def application_received(application_id: str, *, phone: str = "+996700123456",
                         email: str = "parent@example.kg", parent_id: str = "parent-1") -> Event:
    return new_event("application.received.v1", application_id, {
        "application_id": application_id, "parent_id": parent_id, "locale": "ru", "email": email, "phone": phone,
    }, source="registration")


def referral_issued(referral_id: str, application_id: str, *, deadline: datetime, at: datetime,
                    category: str = "extraordinary", needs_confirmation: bool = True,
                    kindergarten: str = "kg-sun", kindergarten_name: str = "Бала бакча № 12 «Күн»") -> Event:
    return new_event("referral.issued.v1", referral_id, {
        "referral_id": referral_id, "application_id": application_id, "kindergarten_id": kindergarten,
        "kindergarten_name": kindergarten_name, "deadline": deadline.isoformat(),
        "needs_confirmation": needs_confirmation, "category": category, "cohort": 2023, "language": "ru",
    }, source="queue", time=at)


def referral_fact(kind: str, referral_id: str, application_id: str, *, at: datetime, **fields) -> Event:
    """A referral.<kind>.v1 fact as the queue publishes it. Validated when
    its schema exists; the types the queue has not published a schema for
    yet are built as they come (the read model takes the envelope as is)."""
    data = {"referral_id": referral_id, "application_id": application_id,
            **{k: v for k, v in fields.items() if v is not None and v != ""}}
    event_type = f"referral.{kind}.v1"
    try:
        return new_event(event_type, referral_id, data, source="queue", time=at)
    except UnknownEventType:
        return Event(source="/kezek/queue", type=event_type, time=at, subject=referral_id, data=data)


def referral_closed(kind: str, referral_id: str, application_id: str, *, at: datetime, reason: str = "") -> Event:
    """A fact that closes the referral: cancelled, expired, privilege_rejected, enrolled."""
    return referral_fact(kind, referral_id, application_id, at=at, reason=reason)


@dataclass
class FakeReferrals:
    """The referral workflow's updates, without Temporal: records the calls,
    answers as the workflow's rules would for an open confirmation window
    (certificate validity, the enrolment window), or with the refusal set in
    `refuse`."""

    calls: list[tuple[str, str, object, str]] = field(default_factory=list)
    refuse: str | None = None
    enrol_days: int = 5

    async def confirm(self, referral_id: str, act: c.ConfirmPrivilege, update_id: str) -> c.ActResult:
        self.calls.append(("confirm", referral_id, act, update_id))
        if self.refuse:
            raise ReferralRefused(self.refuse)
        at = act.acted_at or datetime.now(UTC)
        cal = kcal.calendar("KG")
        reason = rules.certificate_out_of_date(act.certificate_issued, cal.local_date(at),
                                               rules.DEFAULTS.certificate_valid_days)
        if reason:
            return c.ActResult(event="referral.certificate_requested", state=c.ReferralState.AWAITING_CONFIRMATION,
                               deadline=at + timedelta(days=3), reason=reason)
        policy = rules.Windows(enrol_working_days=self.enrol_days)
        return c.ActResult(event="referral.privilege_confirmed", state=rules.after(rules.S.AWAITING_CONFIRMATION,
                                                                                   rules.Act.CONFIRM),
                           deadline=rules.enrolment_deadline(cal, at, policy))

    async def reject(self, referral_id: str, act: c.RejectPrivilege, update_id: str) -> c.ActResult:
        self.calls.append(("reject", referral_id, act, update_id))
        if self.refuse:
            raise ReferralRefused(self.refuse)
        return c.ActResult(event="referral.privilege_rejected", state=c.ReferralState.PRIVILEGE_REJECTED,
                           reason=act.reason or None)

    async def enrol(self, referral_id: str, act: c.RecordEnrolment, update_id: str) -> c.ActResult:
        self.calls.append(("enrol", referral_id, act, update_id))
        if self.refuse:
            raise ReferralRefused(self.refuse)
        return c.ActResult(event="referral.enrolled", state=c.ReferralState.ENROLLED)

    async def cancel(self, referral_id: str, act: c.CancelReferral, update_id: str) -> c.ActResult:
        self.calls.append(("cancel", referral_id, act, update_id))
        if self.refuse:
            raise ReferralRefused(self.refuse)
        return c.ActResult(event="referral.cancelled", state=c.ReferralState.CANCELLED)


@dataclass
class FakeDirectory:
    """The queue's register as `kezek staff-add` asks it: kindergarten -> district."""

    kindergartens: dict[str, str] = field(default_factory=dict)

    def kindergarten(self, kindergarten: str) -> dict | None:
        district = self.kindergartens.get(kindergarten)
        return None if district is None else {"id": kindergarten, "district": district}

    def district_exists(self, district: str) -> bool:
        return district in self.kindergartens.values()


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n" \
      b"trailer<</Root 1 0 R>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def staff_site(state_dir, staff=(), **options):
    """The staff pages (the verification service's app) on their own
    database under `state_dir`, the referral workflow faked, with these
    (login, role, district) accounts, each with PASSWORD. Cheap password
    hashes: the tests prove the pages, not argon2's cost."""
    from argon2 import PasswordHasher

    from tests.migrated import upgrade
    from services.verification.api import create_app
    from services.verification.settings import VerificationSettings

    settings = VerificationSettings(state_dir=state_dir, env="test")
    upgrade("verification", settings.database_url_for("verification"))
    app = create_app(settings, **{"referrals": FakeReferrals(), **options},
                     hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    for login, role, district in staff:
        app.state.service.staff.add(login, login.title(), role, district, PASSWORD)
    return app
