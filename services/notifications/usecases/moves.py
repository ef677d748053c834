"""The moves of a message's status, each with its fact on the outbox and
its row in the audit trail (the verified actor, never an address or a
text): one place for what every use case does when a message is queued,
sent, delivered or given up (domain.py says which moves may happen)."""
from __future__ import annotations

from datetime import datetime
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.logging import get_logger
from kezek.sealing import ring_of
from kezek.trust import Principal
from services.notifications import domain as d
from services.notifications.models import DeadLetter, Message, audit, outbox
from services.notifications.usecases.common import aware

log = get_logger("services.notifications.service")


def event_data(msg: Message) -> dict:
    return {"message_id": msg.id, "channel": msg.channel, "kind": msg.kind,
            "source_event_id": msg.source_event_id, "source_event_type": msg.source_event_type,
            "parent_id": msg.parent_id}


class Later:
    """A dispatcher round's facts and audit rows, kept as its messages are
    settled and written at the round's end in one statement each (`write`),
    in the round's transaction and in their order."""

    def __init__(self) -> None:
        self.events: list = []
        self.audits: list[tuple[Principal, dict]] = []

    def write(self, session: Session) -> None:
        outbox.write(session, self.events)
        for who, rows in groupby(self.audits, key=lambda a: a[0]):
            audit.record_many(session, who, [row for _who, row in rows])
        self.events, self.audits = [], []


def fact(session: Session, event_type: str, m: Message, data: dict, later: Later | None = None) -> None:
    if later is None:
        outbox.add(session, event_type, m.id, data)
    else:
        later.events.append(outbox.new(event_type, m.id, data))


def audited(session: Session, who: Principal, action: str, m: Message, *, later: Later | None = None,
            **details: Any) -> None:
    """One move of a message, for the audit trail: no address, no text."""
    row = audit_row(action, m, **details)
    if later is not None:
        later.audits.append((who, row))
        return
    audit.record(session, who, action, row["subject"], details=row["details"])


def audit_row(action: str, m: Any, **details: Any) -> dict:
    """`audited`'s row, for `audit.record_many` (`m`: a message or what
    has its attributes)."""
    return {"action": action, "subject": f"message:{m.id}",
            "details": {"kind": m.kind, "channel": m.channel, "status": m.status, **details}}


def queued(session: Session, msg: Message, release: datetime) -> None:
    outbox.add(session, "notification.queued.v1", msg.id, queued_data(msg, release))


def queued_data(msg: Any, release: datetime) -> dict:
    """The data of a message's notification.queued.v1 (`m`: a message or
    what has its attributes)."""
    data = {**event_data(msg), "locale": msg.locale, "release_at": release.isoformat()}
    if msg.sms_segments is not None:
        data.update(segments=msg.sms_segments, encoding=msg.sms_encoding)
    return data


def sms_slots(session: Session, phone: str, now: datetime, limits: tuple[d.RateLimit, ...]) -> list[datetime]:
    """Send times taken on this phone: sent ones and those scheduled, so
    that a burst of events spreads out instead of all taking one slot."""
    return sms_slots_of(session, {phone}, now, limits)[phone]


def sms_slots_of(session: Session, phones: set[str], now: datetime,
                 limits: tuple[d.RateLimit, ...]) -> dict[str, list[datetime]]:
    """`sms_slots` of several phones in one statement, by phone (a list
    for each, empty when nothing is taken)."""
    horizon = now - max(limit.window for limit in limits)
    ring = ring_of(session)
    phone_of = {h: phone for phone in sorted(phones) for h in ring.lookups("address", phone)}
    out: dict[str, list[datetime]] = {phone: [] for phone in phones}
    if not phone_of:
        return out
    if session.get_bind().dialect.name == "postgresql":
        # Two makers of SMS to one phone at once (consumer replicas, a
        # dispatcher's retry) count each other's: the second waits here
        # until the first has committed. In one order, so neither waits for
        # the other; SQLite's writers are serial already.
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended('sms:' || k, 0)) "
                                "FROM unnest(CAST(:keys AS text[])) AS k"), {"keys": sorted(phone_of)})
    when = sa.func.coalesce(Message.sent_at, Message.next_attempt_at)
    rows = session.execute(sa.select(Message.address_hash, when).where(
        Message.channel == d.Channel.SMS.value, Message.address_hash.in_(sorted(phone_of)),
        Message.status != d.Status.FAILED.value, when > horizon))
    for h, t in rows:
        out[phone_of[h]].append(aware(t))
    return out


def forget_secret(m: Message) -> None:
    if m.kind in d.SECRET_KINDS:
        m.subject, m.body = d.REDACTED, d.REDACTED


def sent(s: Session, m: Message, now: datetime, who: Principal, *, segments: int | None = None,
         keep_status: bool = False, later: Later | None = None) -> None:
    m.sent_at, m.next_attempt_at = now, None
    if not keep_status:
        m.status = d.Status.SENT.value
    fact(s, "notification.sent.v1", m, {**event_data(m), "attempts": m.attempts,
                                         **({"segments": segments} if segments is not None else {})}, later)
    audited(s, who, "notification.sent", m, attempts=m.attempts, later=later)


def delivered(s: Session, m: Message, now: datetime, who: Principal, *, later: Later | None = None) -> None:
    m.status, m.delivered_at, m.next_attempt_at = d.Status.DELIVERED.value, now, None
    fact(s, "notification.delivered.v1", m, {**event_data(m), "attempts": m.attempts}, later)
    audited(s, who, "notification.delivered", m, attempts=m.attempts, later=later)


def fail(s: Session, m: Message, reason: str, now: datetime, who: Principal, *, later: Later | None = None) -> None:
    """Given up: kept as a dead letter with why, for an operator."""
    forget_secret(m)
    m.status, m.failed_at, m.next_attempt_at, m.lease_until = d.Status.FAILED.value, now, None, None
    m.last_error = reason
    s.merge(DeadLetter(message_id=m.id, reason=reason[:2000], attempts=m.attempts, created_at=now))
    fact(s, "notification.failed.v1", m, {**event_data(m), "attempts": m.attempts, "reason": reason[:500]}, later)
    audited(s, who, "notification.dead_lettered", m, attempts=m.attempts, reason=reason[:300], later=later)
    log.warning("notifications.dead_lettered", message_id=m.id, reason=reason, attempts=m.attempts)
