"""Dispatching: the dispatcher's steps around a send (which happens
outside any transaction), the SMS provider's signed receipts, and an
operator's retry of a failed message."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.db import unit_of_work
from kezek.logging import get_logger
from kezek.problems import DomainError
from kezek.trust import Principal
from services.notifications import domain as d
from services.notifications.models import DeadLetter, Message, ReceiptSignature
from services.notifications.signature import Signed
from services.notifications.usecases import moves
from services.notifications.usecases.common import SMS_PROVIDER, SYSTEM, Attempt, Outgoing, aware, insert_for

log = get_logger("services.notifications.service")


# The note of an acceptance (`note_accepted`): one statement, built once and
# run on a connection of its own, without a session. Each note built its
# statement and went through a session and the ORM's bulk update: an e-mail
# cost the dispatcher 5.43 ms of CPU, 4.15 ms since
# (bench/notifications_dispatch.py, paired runs).
_MESSAGES = Message.__table__
_NOTE = (sa.update(_MESSAGES)
         .where(_MESSAGES.c.id == sa.bindparam("mid"), _MESSAGES.c.status == d.Status.SENDING.value)
         .values(accepted_at=sa.bindparam("at", type_=_MESSAGES.c.accepted_at.type),
                 provider_ref=sa.func.coalesce(_MESSAGES.c.provider_ref,
                                               sa.bindparam("ref", type_=_MESSAGES.c.provider_ref.type))))


# How often (seconds of the receipts' own time) a receipt forgets the
# signatures past their window (`Dispatching._forgetting_due`).
FORGET_SIGNATURES_EVERY = 10


class ReceiptReplayed(Exception):
    """A signed receipt taken before, sent again."""


class Dispatching:
    """Part of NotificationService (service.py): what it needs from it."""

    sessions: sessionmaker[Session]
    tz: tzinfo
    limits: tuple[d.RateLimit, ...]
    retry: d.RetryPolicy
    urgent_retry: d.RetryPolicy
    clock: Any
    signatures_forgotten_at: int | None

    def claim_due(self, channel: d.Channel, limit: int = 20, lease: timedelta = timedelta(minutes=2), *,
                  leases: bool = True) -> list[Outgoing]:
        """Takes due messages of one channel for sending. A lease, not a lock
        held over the send: if this process dies mid-send, the message is
        claimed again once the lease ends (the SMS gateway drops the repeat
        by its idempotency key; a message the provider had accepted is
        recorded, not sent). `leases`: look for run-out leases too (a
        dispatcher does every half minute; they come of crashes)."""
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            out, taken = [], 0
            for query in claims(channel, now, leases=leases):
                if taken >= limit:
                    break
                for m in s.scalars(query.limit(limit - taken).with_for_update(skip_locked=True)):
                    taken += 1
                    if m.status == d.Status.SENDING.value and m.accepted_at is not None:
                        # Its dispatcher died after the provider accepted it and
                        # before the record was whole: record it, never send again.
                        log.info("notifications.accepted_recorded", message_id=m.id)
                        self._settle(s, m, Attempt(d.Outcome.SENT, provider_ref=m.provider_ref), now)
                        continue
                    m.status, m.lease_until = d.Status.SENDING.value, now + lease
                    out.append(Outgoing(m.id, d.Channel(m.channel), m.address, m.locale, m.subject, m.body,
                                        m.urgent, aware(m.expires_at), m.attempts))
            return out

    def note_accepted(self, mid: str, provider_ref: str | None) -> None:
        """The provider has just accepted the message: one short statement,
        committed before anything else, so that the time in which a dead
        dispatcher leaves a sent message looking unsent is as short as the
        database allows (a mail server has no idempotency key to fall back
        on). `record_attempt` then writes the rest; if this process dies
        first, `claim_due` finishes the record instead of sending again."""
        with self.sessions.kw["bind"].begin() as conn:
            conn.execute(_NOTE, {"mid": mid, "at": self.clock(), "ref": provider_ref})

    def record_attempt(self, mid: str, attempt: Attempt) -> d.Status:
        return self.record_attempts([(mid, attempt)])[0]

    def record_attempts(self, attempts: list[tuple[str, Attempt]]) -> list[d.Status]:
        """A round of sends' outcomes, as `record_attempt` records each, in
        one transaction: the round's messages read (and locked, in the order
        of their ids) in one statement, their updates flushed together, their
        facts and audit rows written in one statement each."""
        if not attempts:
            return []
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            ids = sorted({mid for mid, _attempt in attempts})
            found = {m.id: m for m in s.scalars(sa.select(Message).where(Message.id.in_(ids))
                                                .order_by(Message.id).with_for_update())}
            later = moves.Later()
            out = [self._settle(s, found[mid], attempt, now, later) for mid, attempt in attempts]
            later.write(s)
            return out

    def _settle(self, s: Session, m: Message, attempt: Attempt, now: datetime,
                later: moves.Later | None = None) -> d.Status:
        """What an attempt's outcome makes of the message (its row locked)."""
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
            moves.forget_secret(m)
        if result.status is d.Status.QUEUED:
            m.status = d.Status.QUEUED.value
            m.next_attempt_at = d.release_at(d.Channel(m.channel), result.next_attempt_at, self.tz,
                                             urgent=m.urgent)
            log.info("notifications.retry", message_id=m.id, attempts=m.attempts, error=attempt.error)
            moves.audited(s, SYSTEM, "notification.retry_scheduled", m, attempts=m.attempts, later=later,
                          error=(attempt.error or "")[:300], next_attempt_at=m.next_attempt_at.isoformat())
        elif result.status is d.Status.FAILED:
            moves.fail(s, m, attempt.error or attempt.outcome.value, now, SYSTEM, later=later)
        else:
            moves.sent(s, m, now, SYSTEM, segments=m.sms_segments, later=later)
            if result.status is d.Status.DELIVERED:
                moves.delivered(s, m, now, SYSTEM, later=later)
        return d.Status(m.status)

    def give_up_expired(self, mid: str) -> None:
        now = self.clock()
        with unit_of_work(self.sessions) as s:
            m = s.get(Message, mid, with_for_update=True)
            if m.status == d.Status.SENDING.value:
                moves.fail(s, m, "expired before it could be sent", now, SYSTEM)

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
                take_signature(s, signed, window, forget=self._forgetting_due(signed))
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
                    moves.sent(s, m, now, SMS_PROVIDER, keep_status=True)
                moves.delivered(s, m, now, SMS_PROVIDER)
            else:
                # The gateway has already tried the handset; another attempt
                # from us would risk a duplicate for the parent.
                moves.fail(s, m, f"undelivered: {error or 'no reason given'}", now, SMS_PROVIDER)
            return True

    def _forgetting_due(self, signed: Signed) -> bool:
        """Whether this receipt forgets the signatures past their window: the
        first one, then one every FORGET_SIGNATURES_EVERY seconds of the
        receipts' own time. Each receipt deleted them, a statement more in
        each of a distribution day's 10,000 receipts for what is a few rows
        a second (two receipts in the same moment may both delete: harmless)."""
        last = self.signatures_forgotten_at
        if last is not None and 0 <= signed.at - last < FORGET_SIGNATURES_EVERY:
            return False
        self.signatures_forgotten_at = signed.at
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
                                 sms_sent_at=moves.sms_slots(s, m.address, now, self.limits) if channel is d.Channel.SMS else ())
            before = m.attempts
            m.status, m.attempts, m.next_attempt_at, m.failed_at = d.Status.QUEUED.value, 0, release, None
            m.accepted_at = None
            s.execute(sa.delete(DeadLetter).where(DeadLetter.message_id == m.id))
            moves.queued(s, m, release)
            moves.audited(s, who, "notification.retried", m, attempts_before=before, release_at=release.isoformat())
            s.flush()
            s.expunge(m)
            return m


def claims(channel: d.Channel, now: datetime, *, leases: bool = True) -> list[sa.Select]:
    """What a claim takes, in order: the channel's messages whose lease ran
    out (with `leases`), then its queued messages due, urgent first, each in
    the order they came due. Each reads no more than it takes: the queued
    ones along their partial index (`ix_messages_queued`: channel, urgent
    descending, due time), in its order, with no sort. One statement over
    every due message of every channel, sorted, read the whole table: 0.9 s
    a claim with a distribution day's 6,000 SMS waiting, which set the pace
    of the day's SMS."""
    mine = Message.channel == channel.value
    due = sa.select(Message).where(mine, Message.status == d.Status.QUEUED.value, Message.next_attempt_at <= now) \
        .order_by(Message.urgent.desc(), Message.next_attempt_at)
    if not leases:
        return [due]
    return [sa.select(Message).where(mine, Message.status == d.Status.SENDING.value, Message.lease_until < now)
            .order_by(Message.lease_until), due]


def take_signature(session: Session, signed: Signed, window: int, *, forget: bool = True) -> None:
    """Remembers a receipt's signature for its window; ReceiptReplayed if it
    was taken before. Signatures past the window can no longer be replayed
    (they are stale), so they are forgotten here when `forget`. This
    receipt's own time (checked against the clock on arrival) is the
    measure of 'past'."""
    signed_at = datetime.fromtimestamp(signed.at, UTC)
    if forget:
        session.execute(sa.delete(ReceiptSignature).where(
            ReceiptSignature.signed_at < signed_at - timedelta(seconds=2 * window))
            .execution_options(synchronize_session=False))
    taken = session.execute(insert_for(session, ReceiptSignature).values(digest=signed.digest, signed_at=signed_at)
                            .on_conflict_do_nothing(index_elements=["digest"]))
    if taken.rowcount == 0:
        raise ReceiptReplayed(signed.digest)
