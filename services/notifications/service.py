"""Use cases of the notifications service. Each runs in one transaction that
also writes its notification.* events to the outbox.

- `handle(session, event)`: the Kafka consumer's handler (inside the
  consumer's transaction, with the event id already claimed): remember
  contacts and referral facts, then create one message per channel.
- `notify_parent(...)`: the workflow's notify_parent activity; makes messages
  only for the kinds no Kafka fact tells (`domain.ACTIVITY_KINDS`), once per
  idempotency key.
- `claim_due` / `record_attempt` / `record_receipt`: the dispatcher's steps
  around a send (which happens outside any transaction).
- `send_again`: an operator sends a failed message again.
- queries for the operator view and the parent's inbox.

Every move of a message's status is recorded in the audit trail with the
verified actor: the service itself (`SYSTEM`) when it queues, sends, retries
or gives up, the SMS provider for a signed receipt, the parent for a read
mark, the operator for a retry.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.db import unit_of_work
from kezek.events import Event, new_event, schema_for
from kezek.logging import get_logger
from kezek.problems import DomainError
from kezek.trust import Principal, service_principal
from services.notifications import domain as d
from services.notifications.models import (
    Contact, DeadLetter, KnownApplication, KnownReferral, Message, ParkedEvent, ReceiptSignature, audit, outbox,
)
from services.notifications.signature import Signed
from services.notifications.rendering import Renderer, template_values

log = get_logger(__name__)

# Message ids derive from (event, channel): a redelivered event can only ever
# name the message it already made.
MESSAGE_NS = uuid.UUID("6f1c1f64-3a55-4c5e-9a0e-0b8f6d7c2a11")
REFERRAL_FACTS = ("kindergarten_id", "kindergarten_name", "kindergarten_address", "office_address",
                  "needs_confirmation")
CONTACT_EVENTS = ("application.received.v1", "account.activation_issued.v1")
CONSUMED_TYPES = frozenset(d.RULES) | frozenset(CONTACT_EVENTS)
# The activity's claims in processed_events, apart from the Kafka consumer's.
ACTIVITY_CONSUMER = "notifications.notify_parent"
# Fields the workflow sends as local wall time without an offset.
_LOCAL_TIMES = ("deadline", "stoplist_until")
# Who acts when nobody asked: the consumer, the activity, the dispatcher.
SYSTEM = service_principal("notifications")
# The SMS provider, known by the signature of its receipts (signature.py).
SMS_PROVIDER = Principal(actor="provider:sms", role="provider", via="notifications")


class ReceiptReplayed(Exception):
    """A signed receipt taken before, sent again."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    return aware(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def message_id(event_id: str, channel: d.Channel) -> str:
    return str(uuid.uuid5(MESSAGE_NS, f"{event_id}:{channel.value}"))


@dataclass(frozen=True)
class Outgoing:
    """A claimed message, as a transport sees it."""
    id: str
    channel: d.Channel
    address: str
    locale: str
    subject: str | None
    body: str
    urgent: bool
    expires_at: datetime | None
    attempts: int


@dataclass(frozen=True)
class Attempt:
    outcome: d.Outcome
    provider_ref: str | None = None
    error: str | None = None


class NotificationService:
    def __init__(self, sessions: sessionmaker[Session], *, tz: tzinfo, cabinet_url: str,
                 renderer: Renderer | None = None, clock: Callable[[], datetime] = utcnow,
                 limits: tuple[d.RateLimit, ...] = d.SMS_LIMITS, retry: d.RetryPolicy = d.DEFAULT_RETRY,
                 urgent_retry: d.RetryPolicy = d.URGENT_RETRY):
        self.sessions = sessions
        self.retry, self.urgent_retry = retry, urgent_retry
        self.tz = tz
        self.cabinet_url = cabinet_url
        self.renderer = renderer or Renderer(tz)
        self.clock = clock
        self.limits = limits

    # ------------------------------------------------------------ consuming

    def handle(self, session: Session, event: Event) -> None:
        """One event: at most one message per channel (the caller's claim of
        the event id and this work commit together)."""
        self._remember(session, event)
        if event.type in d.RULES:
            self._notify(session, event)
        if event.type == "application.received.v1":
            self._replay_parked(session, event.data["application_id"])

    def notify_parent(self, *, key: str, kind: str, referral_id: str, application_id: str,
                      parent_id: str | None, at: datetime, data: dict) -> bool:
        """The workflow's command to tell the parent about `kind`. Messages
        only for kinds in `domain.ACTIVITY_KINDS` (the others are told from
        their Kafka fact: acknowledged here, so never twice). Once per `key`:
        the key's claim and the messages commit together, and the message ids
        derive from the key as well. True if messages were made (or parked)."""
        if not d.told_by_activity(kind):
            log.info("notifications.activity_acknowledged", kind=kind, referral_id=referral_id)
            return False
        event_id = str(uuid.uuid5(MESSAGE_NS, f"activity:{key}"))
        allowed = schema_for(kind).get("properties", {})
        fields = {**data, "referral_id": referral_id, "application_id": application_id,
                  **({"parent_id": parent_id} if parent_id else {})}
        clean = {k: self._local_time(v) if k in _LOCAL_TIMES else v
                 for k, v in fields.items() if k in allowed and v not in (None, "-")}
        event = new_event(kind, f"referral:{referral_id}", clean, source="notifications", time=at,
                          event_id=event_id)
        with unit_of_work(self.sessions) as s:
            if not outbox.claim(s, ACTIVITY_CONSUMER, event_id):
                return False
            self.handle(s, event)
            return True

    def _local_time(self, value: Any) -> Any:
        """The workflow writes deadlines as local wall time without an offset."""
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=self.tz)).isoformat()

    def _notify(self, session: Session, event: Event) -> None:
        data = event.data
        recipient = self._recipient(session, event)
        if recipient is None:
            session.merge(ParkedEvent(event_id=event.id, application_id=data["application_id"],
                                      payload=event.to_json(), parked_at=self.clock()))
            log.info("notifications.parked", application_id=data["application_id"])
            return
        if event.type == "application.position_changed.v1" and not self._top_ten_news(session, data):
            return
        if event.type == "application.received.v1" and data.get("imported"):
            return  # the old portal told the parent; the contacts are what counts
        facts = self._referral_facts(session, data)
        values = template_values({**facts, **data}, occurred_at=event.time, tz=self.tz,
                                 cabinet_url=self.cabinet_url)
        for planned in d.plan_messages(event.type, recipient, event.time):
            self._create(session, event, planned, recipient, values)

    def _create(self, session: Session, event: Event, planned: d.PlannedMessage,
                recipient: d.Recipient, values: dict) -> None:
        now = self.clock()
        data = event.data
        rule = d.RULES[event.type]
        mid = message_id(event.id, planned.channel)
        if session.get(Message, mid) is not None:
            return
        expires = (_when(data.get("expires_at")) or planned.expires_at) if rule.ttl else None
        msg = Message(
            id=mid, source_event_id=event.id, source_event_type=event.type, kind=planned.kind.value,
            channel=planned.channel.value, parent_id=recipient.parent_id,
            application_id=data.get("application_id"), referral_id=data.get("referral_id"),
            address=planned.address, locale=planned.locale, urgent=planned.urgent,
            attempts=0, expires_at=expires, created_at=now, body="",
        )
        try:
            rendered = self.renderer.render(planned.kind, planned.locale, planned.channel, values)
        except Exception as exc:  # a template bug must not lose the event silently
            log.error("notifications.render_failed", kind=planned.kind.value, locale=planned.locale, error=repr(exc))
            session.add(msg)
            self._queued_event(session, msg, now)
            self._fail(session, msg, f"render failed: {exc!r}", now, SYSTEM)
            return
        msg.subject, msg.body = rendered.subject, rendered.body
        if rendered.sms:
            msg.sms_encoding, msg.sms_segments = rendered.sms.encoding, rendered.sms.segments
        release = d.schedule(planned.channel, now, self.tz, urgent=planned.urgent,
                             sms_sent_at=self._sms_slots(session, planned.address, now)
                             if planned.channel is d.Channel.SMS else (),
                             limits=self.limits)
        msg.status, msg.next_attempt_at = d.Status.QUEUED.value, release
        session.add(msg)
        session.flush()  # the next SMS to this phone in this transaction must see this slot taken
        self._queued_event(session, msg, release)
        _audit(session, SYSTEM, "notification.queued", msg, release_at=release.isoformat())

    def _queued_event(self, session: Session, msg: Message, release: datetime) -> None:
        data = {**self._event_data(msg), "locale": msg.locale, "release_at": release.isoformat()}
        if msg.sms_segments is not None:
            data.update(segments=msg.sms_segments, encoding=msg.sms_encoding)
        outbox.add(session, "notification.queued.v1", msg.id, data)

    def _event_data(self, msg: Message) -> dict:
        return {"message_id": msg.id, "channel": msg.channel, "kind": msg.kind,
                "source_event_id": msg.source_event_id, "source_event_type": msg.source_event_type,
                "parent_id": msg.parent_id}

    def _sms_slots(self, session: Session, phone: str, now: datetime) -> list[datetime]:
        """Send times taken on this phone: sent ones and those scheduled, so
        that a burst of events spreads out instead of all taking one slot."""
        horizon = now - max(limit.window for limit in self.limits)
        when = sa.func.coalesce(Message.sent_at, Message.next_attempt_at)
        rows = session.scalars(sa.select(when).where(
            Message.channel == d.Channel.SMS.value, Message.address == phone,
            Message.status != d.Status.FAILED.value, when > horizon))
        return [aware(t) for t in rows]

    def _recipient(self, session: Session, event: Event) -> d.Recipient | None:
        data = event.data
        if event.type in ("registration.email_code_issued.v1", "account.activation_issued.v1"):
            return d.Recipient(email=data["email"], locale=d.choose_locale(data.get("locale")))
        if event.type == "application.received.v1":
            return d.Recipient(parent_id=data["parent_id"], email=data.get("email"),
                               phone=self._phone(data.get("phone")), locale=d.choose_locale(data.get("locale")))
        # The application's own received event brings the contacts it was
        # filed with; until it has come (topics interleave freely) an account
        # activation may have made a contact with no phone, and telling the
        # parent from that would silently drop the SMS. So: park until then.
        app = session.get(KnownApplication, data["application_id"])
        if app is None:
            return None
        parent_id = data.get("parent_id") or app.parent_id
        contact = session.get(Contact, parent_id)
        if contact is None:
            return None
        return d.Recipient(parent_id=parent_id, email=contact.email, phone=self._phone(contact.phone),
                           locale=contact.locale)

    @staticmethod
    def _phone(raw: str | None) -> str | None:
        if not raw:
            return None
        try:
            return d.normalize_phone(raw)
        except d.InvalidPhone:
            log.warning("notifications.phone_unusable")
            return None

    def _remember(self, session: Session, event: Event) -> None:
        data, now = event.data, self.clock()
        if event.type == "application.received.v1":
            _upsert(session, Contact, {"parent_id": data["parent_id"], "email": data.get("email"),
                                       "phone": data.get("phone"), "locale": d.choose_locale(data.get("locale")),
                                       "updated_at": now}, ["parent_id"])
            _upsert(session, KnownApplication, {"application_id": data["application_id"],
                                                "parent_id": data["parent_id"], "imported": bool(data.get("imported"))},
                    ["application_id"], insert_only={"top_ten_told": False})
        elif event.type == "account.activation_issued.v1":
            _upsert(session, Contact, {"parent_id": data["parent_id"], "email": data["email"],
                                       "locale": d.choose_locale(data.get("locale")), "updated_at": now},
                    ["parent_id"], insert_only={"phone": None})
        if event.type.startswith("referral.") and data.get("referral_id"):
            known = session.get(KnownReferral, data["referral_id"], with_for_update=True)
            facts = dict(known.facts) if known else {}
            facts.update({k: data[k] for k in REFERRAL_FACTS if k in data})
            if event.type == "referral.privilege_confirmed.v1":
                facts["needs_confirmation"] = False  # the enrolment window follows
            if known is None:
                session.add(KnownReferral(referral_id=data["referral_id"], application_id=data["application_id"],
                                          facts=facts))
            else:
                known.facts = facts

    def _referral_facts(self, session: Session, data: dict) -> dict:
        if not data.get("referral_id"):
            return {}
        known = session.get(KnownReferral, data["referral_id"])
        facts = dict(known.facts) if known else {}
        if "window" in data:
            # What this event is about decides the window, not what came before.
            facts.pop("needs_confirmation", None)
        return facts

    def _top_ten_news(self, session: Session, data: dict) -> bool:
        app = session.get(KnownApplication, data["application_id"], with_for_update=True)
        if app is None:
            return False
        previous = data.get("previous_position", app.last_position)
        if previous is None and app.imported:
            # The first position of a child moved from the old portal is the
            # one the parent already knew: telling every such parent at once
            # on the day of the move would be a flood, not news.
            previous = app.last_position if app.last_position is not None else data["position"]
        news = d.reached_top_ten(previous, data["position"], app.top_ten_told)
        app.last_position = data["position"]
        app.top_ten_told = app.top_ten_told or news
        return news

    def _replay_parked(self, session: Session, application_id: str) -> None:
        parked = session.scalars(sa.select(ParkedEvent).where(ParkedEvent.application_id == application_id)
                                 .order_by(ParkedEvent.parked_at)).all()
        for row in parked:
            session.delete(row)
            session.flush()
            self._notify(session, Event.from_json(row.payload))

    # ------------------------------------------------------------ dispatching

    def claim_due(self, channels: tuple[d.Channel, ...] | None = None, limit: int = 20,
                  lease: timedelta = timedelta(minutes=2)) -> list[Outgoing]:
        """Takes due messages for sending. A lease, not a lock held over the
        send: if this process dies mid-send, the message is claimed again once
        the lease ends (and the provider drops the repeat by message id)."""
        now = self.clock()
        due = sa.or_(
            sa.and_(Message.status == d.Status.QUEUED.value, Message.next_attempt_at <= now),
            sa.and_(Message.status == d.Status.SENDING.value, Message.lease_until < now),
        )
        query = sa.select(Message).where(due)
        if channels:
            query = query.where(Message.channel.in_([c.value for c in channels]))
        query = (query.order_by(Message.urgent.desc(), Message.next_attempt_at)
                 .limit(limit).with_for_update(skip_locked=True))
        with unit_of_work(self.sessions) as s:
            out = []
            for m in s.scalars(query):
                m.status, m.lease_until = d.Status.SENDING.value, now + lease
                out.append(Outgoing(m.id, d.Channel(m.channel), m.address, m.locale, m.subject, m.body,
                                    m.urgent, aware(m.expires_at), m.attempts))
            return out

    def record_attempt(self, mid: str, attempt: Attempt) -> d.Status:
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            m = s.get(Message, mid, with_for_update=True)
            if m.status != d.Status.SENDING.value:
                # A receipt overtook our own record of the send: keep its status.
                if attempt.outcome in (d.Outcome.SENT, d.Outcome.DELIVERED):
                    m.sent_at = m.sent_at or now
                    m.provider_ref = m.provider_ref or attempt.provider_ref
                return d.Status(m.status)
            result = d.after_attempt(attempt.outcome, m.attempts, now, self.urgent_retry if m.urgent else self.retry, m.id,
                                     expires_at=aware(m.expires_at))
            m.attempts, m.lease_until, m.last_error = result.attempts, None, attempt.error
            if attempt.provider_ref:
                m.provider_ref = attempt.provider_ref
            if result.status is not d.Status.QUEUED:
                self._forget_secret(m)
            if result.status is d.Status.QUEUED:
                m.status = d.Status.QUEUED.value
                m.next_attempt_at = d.release_at(d.Channel(m.channel), result.next_attempt_at, self.tz,
                                                 urgent=m.urgent)
                log.info("notifications.retry", message_id=m.id, attempts=m.attempts, error=attempt.error)
                _audit(s, SYSTEM, "notification.retry_scheduled", m, attempts=m.attempts,
                       error=(attempt.error or "")[:300], next_attempt_at=m.next_attempt_at.isoformat())
            elif result.status is d.Status.FAILED:
                self._fail(s, m, attempt.error or attempt.outcome.value, now, SYSTEM)
            else:
                self._sent(s, m, now, SYSTEM, segments=m.sms_segments)
                if result.status is d.Status.DELIVERED:
                    self._delivered(s, m, now, SYSTEM)
            return d.Status(m.status)

    def give_up_expired(self, mid: str) -> None:
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            m = s.get(Message, mid, with_for_update=True)
            if m.status == d.Status.SENDING.value:
                self._fail(s, m, "expired before it could be sent", now, SYSTEM)

    def record_receipt(self, *, message_id: str | None = None, provider_ref: str | None = None,
                       delivered: bool, error: str | None = None, signed: Signed | None = None,
                       window: int = 300) -> bool:
        """A delivery receipt from the SMS gateway; False if no such message.
        Repeated and late receipts change nothing. `signed`: its signature,
        taken once (ReceiptReplayed the second time) in the same transaction
        as its effect, so a receipt whose effect rolls back may come again."""
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            if signed is not None:
                _take_signature(s, signed, window)
            m = s.get(Message, message_id, with_for_update=True) if message_id else None
            if m is None and provider_ref:
                m = s.scalars(sa.select(Message).where(Message.provider_ref == provider_ref)
                              .with_for_update()).first()
            if m is None:
                return False
            new = d.Status.DELIVERED if delivered else d.Status.FAILED
            if not d.may_move(d.Status(m.status), new):
                return True
            m.lease_until = None
            if delivered:
                if m.sent_at is None:
                    # The receipt overtook our record of the send (or we died
                    # before writing it): the receipt proves the send.
                    self._sent(s, m, now, SMS_PROVIDER, keep_status=True)
                self._delivered(s, m, now, SMS_PROVIDER)
            else:
                # The gateway has already tried the handset; another attempt
                # from us would risk a duplicate for the parent.
                self._fail(s, m, f"undelivered: {error or 'no reason given'}", now, SMS_PROVIDER)
            return True

    def send_again(self, mid: str, who: Principal) -> Message:
        """An operator sends a failed message again, on a fresh schedule
        (quiet hours and the phone's rate limit apply as to a new one)."""
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            m = s.get(Message, mid, with_for_update=True)
            if m is None:
                raise DomainError("message_not_found", field="message_id", status_code=404)
            refusal = d.why_not_again(d.Status(m.status), m.kind, aware(m.expires_at), now)
            if refusal:
                expires = aware(m.expires_at)
                raise DomainError(refusal, field="message_id", params={
                    "status": m.status, "expires_at": expires.isoformat() if expires else None})
            channel = d.Channel(m.channel)
            release = d.schedule(channel, now, self.tz, urgent=m.urgent, limits=self.limits,
                                 sms_sent_at=self._sms_slots(s, m.address, now) if channel is d.Channel.SMS else ())
            before = m.attempts
            m.status, m.attempts, m.next_attempt_at, m.failed_at = d.Status.QUEUED.value, 0, release, None
            s.execute(sa.delete(DeadLetter).where(DeadLetter.message_id == m.id))
            self._queued_event(s, m, release)
            _audit(s, who, "notification.retried", m, attempts_before=before, release_at=release.isoformat())
            s.flush()
            s.expunge(m)
            return m

    @staticmethod
    def _forget_secret(m: Message) -> None:
        if m.kind in d.SECRET_KINDS:
            m.subject, m.body = d.REDACTED, d.REDACTED

    def _sent(self, s: Session, m: Message, now: datetime, who: Principal, *, segments: int | None = None,
              keep_status: bool = False) -> None:
        m.sent_at, m.next_attempt_at = now, None
        if not keep_status:
            m.status = d.Status.SENT.value
        outbox.add(s, "notification.sent.v1", m.id, {**self._event_data(m), "attempts": m.attempts,
                                                       **({"segments": segments} if segments is not None else {})})
        _audit(s, who, "notification.sent", m, attempts=m.attempts)

    def _delivered(self, s: Session, m: Message, now: datetime, who: Principal) -> None:
        m.status, m.delivered_at, m.next_attempt_at = d.Status.DELIVERED.value, now, None
        outbox.add(s, "notification.delivered.v1", m.id, {**self._event_data(m), "attempts": m.attempts})
        _audit(s, who, "notification.delivered", m, attempts=m.attempts)

    def _fail(self, s: Session, m: Message, reason: str, now: datetime, who: Principal) -> None:
        self._forget_secret(m)
        m.status, m.failed_at, m.next_attempt_at, m.lease_until = d.Status.FAILED.value, now, None, None
        m.last_error = reason
        s.merge(DeadLetter(message_id=m.id, reason=reason[:2000], attempts=m.attempts, created_at=now))
        outbox.add(s, "notification.failed.v1", m.id, {**self._event_data(m), "attempts": m.attempts,
                                                         "reason": reason[:500]})
        _audit(s, who, "notification.dead_lettered", m, attempts=m.attempts, reason=reason[:300])
        log.warning("notifications.dead_lettered", message_id=m.id, reason=reason, attempts=m.attempts)

    # ------------------------------------------------------------ reading

    def messages(self, *, parent_id: str | None = None, status: str | None = None,
                 event_type: str | None = None, kind: str | None = None, channel: str | None = None,
                 limit: int = 100, offset: int = 0) -> list[Message]:
        query = sa.select(Message)
        if parent_id:
            query = query.where(Message.parent_id == parent_id)
        if status:
            # `sending` is a lease, not a state anyone outside should see.
            wanted = [status, d.Status.SENDING.value] if status == d.Status.QUEUED.value else [status]
            query = query.where(Message.status.in_(wanted))
        if event_type:
            query = query.where(Message.source_event_type == event_type)
        if kind:
            query = query.where(Message.kind == kind)
        if channel:
            query = query.where(Message.channel == channel)
        query = query.order_by(Message.created_at.desc(), Message.id).limit(limit).offset(offset)
        with self.sessions() as s:
            return list(s.scalars(query))

    def message(self, mid: str) -> Message | None:
        with self.sessions() as s:
            return s.get(Message, mid)

    def dead_letters(self, limit: int = 100, offset: int = 0) -> list[tuple[Message, DeadLetter]]:
        with self.sessions() as s:
            return list(s.execute(sa.select(Message, DeadLetter).join(DeadLetter, DeadLetter.message_id == Message.id)
                                  .order_by(DeadLetter.created_at.desc(), Message.id)
                                  .limit(limit).offset(offset)))

    def audit_trail(self, *, message_id: str | None = None, actor: str | None = None, after_id: int = 0,
                    limit: int = 200) -> list[dict]:
        with self.sessions() as s:
            return audit.trail(s, subject=f"message:{message_id}" if message_id else None, actor=actor,
                               after_id=after_id, limit=limit)

    def inbox(self, parent_id: str, *, unread_only: bool = False, limit: int = 50) -> list[Message]:
        query = sa.select(Message).where(Message.channel == d.Channel.INAPP.value, Message.parent_id == parent_id,
                                         Message.status == d.Status.DELIVERED.value)
        if unread_only:
            query = query.where(Message.read_at.is_(None))
        with self.sessions() as s:
            return list(s.scalars(query.order_by(Message.created_at.desc(), Message.id).limit(limit)))

    def unread(self, parent_id: str) -> int:
        with self.sessions() as s:
            return s.scalar(sa.select(sa.func.count()).select_from(Message).where(
                Message.channel == d.Channel.INAPP.value, Message.parent_id == parent_id,
                Message.status == d.Status.DELIVERED.value, Message.read_at.is_(None)))

    def mark_read(self, parent_id: str, mid: str, who: Principal) -> bool:
        """False if the message is not in this parent's inbox."""
        with unit_of_work(self.sessions) as s:
            m = s.get(Message, mid, with_for_update=True)
            if m is None or m.parent_id != parent_id or m.channel != d.Channel.INAPP.value:
                return False
            if m.read_at is None:
                m.read_at = self.clock()
                _audit(s, who, "notification.read", m)
            return True


def _audit(session: Session, who: Principal, action: str, m: Message, **details: Any) -> None:
    """One move of a message, for the audit trail: no address, no text."""
    audit.record(session, who, action, f"message:{m.id}",
                 details={"kind": m.kind, "channel": m.channel, "status": m.status, **details})


def _take_signature(session: Session, signed: Signed, window: int) -> None:
    """Remembers a receipt's signature for its window; ReceiptReplayed if it
    was taken before. Signatures past the window can no longer be replayed
    (they are stale), so they are forgotten here. This receipt's own time
    (checked against the clock on arrival) is the measure of 'past'."""
    signed_at = datetime.fromtimestamp(signed.at, UTC)
    session.execute(sa.delete(ReceiptSignature).where(
        ReceiptSignature.signed_at < signed_at - timedelta(seconds=2 * window)))
    taken = session.execute(_insert(session, ReceiptSignature).values(digest=signed.digest, signed_at=signed_at)
                            .on_conflict_do_nothing(index_elements=["digest"]))
    if taken.rowcount == 0:
        raise ReceiptReplayed(signed.digest)


def _insert(session: Session, model):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


def _upsert(session: Session, model, values: dict, keys: list[str], insert_only: dict | None = None) -> None:
    """Insert or update by key in one statement (two consumers may see the
    same parent at once)."""
    stmt = _insert(session, model).values(**values, **(insert_only or {}))
    updates = {k: stmt.excluded[k] for k in values if k not in keys}
    session.execute(stmt.on_conflict_do_update(index_elements=keys, set_=updates) if updates
                    else stmt.on_conflict_do_nothing(index_elements=keys))
