"""Notification rules: which event tells the parent what, on which channels,
and when a message may go out. Pure functions and dataclasses: the standard
library and the core's rules (kezek/contacts.py) only.

Vocabulary: an *event* (a fact from another service) yields one *message* per
*channel* (sms, email, inapp). A message is *due* at a moment; quiet hours and
the per-phone rate limit may move that moment later (never earlier, never
dropping the message). A failed attempt is retried on a backoff schedule; after
the last try the message is dead-lettered and marked failed.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta, tzinfo
from enum import StrEnum

from kezek import contacts
from workflows.contracts import ACTIVITY_NOTIFICATION_KINDS


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    INAPP = "inapp"


class Kind(StrEnum):
    """What the parent is told; one template per kind and language."""
    EMAIL_CODE = "email_code"
    APPLICATION_RECEIVED = "application_received"
    ACCOUNT_ACTIVATION = "account_activation"
    REFERRAL_ISSUED = "referral_issued"
    PRIVILEGE_CONFIRMED = "privilege_confirmed"
    PRIVILEGE_REJECTED = "privilege_rejected"
    CERTIFICATE_REQUESTED = "certificate_requested"
    EXTENSION_GRANTED = "extension_granted"
    DEADLINE_NEAR = "deadline_near"
    REFERRAL_EXPIRED = "referral_expired"
    STOPLIST_ENDED = "stoplist_ended"
    TOP_TEN_REACHED = "top_ten_reached"
    VOUCHER_DECIDED = "voucher_decided"
    SIGN_IN_FAILED = "sign_in_failed"
    AGED_OUT = "aged_out"


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"      # claimed by a dispatcher; a lease, not a public status
    SENT = "sent"            # accepted by the SMTP server / SMS gateway
    DELIVERED = "delivered"  # delivery receipt, or stored in the in-app inbox
    FAILED = "failed"        # dead-lettered or refused for good


LOCALES = ("ky", "ru", "kk", "en")
# Russian is official in both countries and offered by the portal in both, so
# it is the language every parent can read when theirs is unknown.
FALLBACK_LOCALE = "ru"
_LOCALE_ALIASES = {"kg": "ky", "kz": "kk", "kaz": "kk", "kir": "ky", "rus": "ru", "eng": "en"}

def choose_locale(preferred: str | None) -> str:
    """The parent's language as one of LOCALES ('ru-KG' -> 'ru', 'kz' -> 'kk')."""
    if not preferred:
        return FALLBACK_LOCALE
    code = preferred.strip().lower().replace("_", "-").split("-", 1)[0]
    code = _LOCALE_ALIASES.get(code, code)
    return code if code in LOCALES else FALLBACK_LOCALE


# ---------------------------------------------------------------- what to send

@dataclass(frozen=True)
class Rule:
    kind: Kind
    channels: tuple[Channel, ...]
    # Urgent messages bypass quiet hours and the rate limit (the parent is
    # waiting for them on the registration page).
    urgent: bool = False
    # A message not sent within `ttl` of its event is useless (an expired code).
    ttl: timedelta | None = None
    # The text carries a secret (a code, a one-time link): it is not kept
    # once the message is sent or given up.
    secret: bool = False


_ALL = (Channel.SMS, Channel.EMAIL, Channel.INAPP)
_QUIET = (Channel.EMAIL, Channel.INAPP)

# Event type -> message. SMS (paid, intrusive) only where a deadline runs or
# the parent must act; DOMAIN.md names SMS for the referral and confirmation.
RULES: dict[str, Rule] = {
    "registration.email_code_issued.v1": Rule(Kind.EMAIL_CODE, (Channel.EMAIL,), urgent=True,
                                              ttl=timedelta(minutes=10), secret=True),
    "application.received.v1": Rule(Kind.APPLICATION_RECEIVED, _QUIET),
    "account.activation_issued.v1": Rule(Kind.ACCOUNT_ACTIVATION, (Channel.EMAIL,), ttl=timedelta(days=2),
                                         secret=True),
    # Wrong passwords for the account are being slowed (registration): its
    # owner is told, at most once a day.
    "account.sign_in_failed.v1": Rule(Kind.SIGN_IN_FAILED, (Channel.EMAIL,), ttl=timedelta(days=1)),
    "referral.issued.v1": Rule(Kind.REFERRAL_ISSUED, _ALL),
    "referral.privilege_confirmed.v1": Rule(Kind.PRIVILEGE_CONFIRMED, _ALL),
    "referral.privilege_rejected.v1": Rule(Kind.PRIVILEGE_REJECTED, _ALL),
    # The clock keeps running while the parent fetches a fresh certificate.
    "referral.certificate_requested.v1": Rule(Kind.CERTIFICATE_REQUESTED, _ALL),
    "referral.extended.v1": Rule(Kind.EXTENSION_GRANTED, _QUIET),
    "referral.deadline_approaching.v1": Rule(Kind.DEADLINE_NEAR, _ALL),
    "referral.expired.v1": Rule(Kind.REFERRAL_EXPIRED, _ALL),
    "application.resumed.v1": Rule(Kind.STOPLIST_ENDED, _QUIET),
    "application.position_changed.v1": Rule(Kind.TOP_TEN_REACHED, _QUIET),
    # The child reached school age and left the queue: nothing to do, no SMS.
    "application.aged_out.v1": Rule(Kind.AGED_OUT, _QUIET),
    # A commission's decision on state funding of a private place: no deadline runs.
    "verification.voucher_decided.v1": Rule(Kind.VOUCHER_DECIDED, _QUIET),
}

# The ReferralWorkflow also asks for messages (activity notifications.notify_parent,
# with the event type as `kind`). One path per kind, so a parent never gets a
# step twice: the queue service publishes referral.issued / privilege_confirmed /
# privilege_rejected / certificate_requested / extended / expired / cancelled /
# enrolled and application.resumed as facts on Kafka, and those are told from the
# fact (the consumer). Only what never travels as a fact is told from the
# activity; every other kind the activity acknowledges without a message.
# (The consumer still accepts a deadline_approaching fact, as the integration
# tests publish one; no service publishes it. If the queue ever does, take it
# out of here.)
# The workflow's contract says which (it asks for no other kind).
ACTIVITY_KINDS = ACTIVITY_NOTIFICATION_KINDS


def told_by_activity(kind: str) -> bool:
    """True if notify_parent makes the messages for `kind` (False: the Kafka
    fact does, or nothing tells it)."""
    return kind in ACTIVITY_KINDS and kind in RULES


SECRET_KINDS = frozenset(rule.kind.value for rule in RULES.values() if rule.secret)
REDACTED = "(removed after sending: it held a code or a one-time link)"


@dataclass(frozen=True)
class Recipient:
    parent_id: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str = FALLBACK_LOCALE

    def address(self, channel: Channel) -> str | None:
        return {Channel.SMS: self.phone, Channel.EMAIL: self.email, Channel.INAPP: self.parent_id}[channel]


@dataclass(frozen=True)
class PlannedMessage:
    kind: Kind
    channel: Channel
    address: str
    locale: str
    urgent: bool
    expires_at: datetime | None


def plan_messages(event_type: str, recipient: Recipient, occurred_at: datetime) -> list[PlannedMessage]:
    """One message per channel of the event's rule that the parent can be
    reached on; an unknown event type gives none."""
    rule = RULES.get(event_type)
    if rule is None:
        return []
    expires = occurred_at + rule.ttl if rule.ttl else None
    locale = choose_locale(recipient.locale)
    out = []
    for channel in rule.channels:
        address = recipient.address(channel)
        if address:
            out.append(PlannedMessage(rule.kind, channel, address, locale, rule.urgent, expires))
    return out


TOP_TEN = 10


def reached_top_ten(previous: int | None, current: int | None, already_told: bool) -> bool:
    """Tell the parent once, the first time the position enters the top ten
    (moving 11 -> 10 -> 11 -> 10 is not news twice)."""
    if already_told or current is None or current > TOP_TEN:
        return False
    return previous is None or previous > TOP_TEN


# ---------------------------------------------------------------- when to send

QUIET_FROM = time(22, 0)
QUIET_UNTIL = time(8, 0)


def in_quiet_hours(moment: datetime, tz: tzinfo) -> bool:
    local = moment.astimezone(tz).time()
    return local >= QUIET_FROM or local < QUIET_UNTIL


def release_at(channel: Channel, due: datetime, tz: tzinfo, *, urgent: bool = False) -> datetime:
    """An SMS due between 22:00 and 08:00 local time waits for 08:00; e-mail,
    in-app and urgent messages go when due."""
    if channel is not Channel.SMS or urgent or not in_quiet_hours(due, tz):
        return due
    local = due.astimezone(tz)
    day = local.date() + timedelta(days=1) if local.time() >= QUIET_FROM else local.date()
    return datetime.combine(day, QUIET_UNTIL, tzinfo=tz).astimezone(due.tzinfo)


@dataclass(frozen=True)
class RateLimit:
    max_count: int
    window: timedelta


# Protects parents from floods (a bug upstream, a retry storm) and the gateway
# account from abuse; a limited message waits, it is never dropped.
SMS_LIMITS: tuple[RateLimit, ...] = (RateLimit(5, timedelta(hours=1)), RateLimit(20, timedelta(days=1)))


def next_sms_slot(sent_at: Iterable[datetime], now: datetime,
                  limits: Sequence[RateLimit] = SMS_LIMITS) -> datetime:
    """The earliest moment, not before `now`, when another SMS to a phone that
    got SMS at `sent_at` stays within every limit."""
    times = sorted(sent_at)
    slot = now
    for limit in limits:
        recent = [t for t in times if t > now - limit.window]
        if len(recent) >= limit.max_count:
            # The oldest send that must leave the window first.
            slot = max(slot, recent[-limit.max_count] + limit.window)
    return slot


def schedule(channel: Channel, due: datetime, tz: tzinfo, *, urgent: bool = False,
             sms_sent_at: Iterable[datetime] = (), limits: Sequence[RateLimit] = SMS_LIMITS) -> datetime:
    """When a message due at `due` may go: quiet hours and the phone's rate
    limit applied until both agree."""
    if channel is not Channel.SMS or urgent:
        return due
    sent = list(sms_sent_at)
    at = due
    for _ in range(10):
        moved = release_at(channel, next_sms_slot(sent, at, limits), tz)
        if moved == at:
            break
        at = moved
    return at


# ---------------------------------------------------------------- retries

@dataclass(frozen=True)
class RetryPolicy:
    """`delays[n]` is the wait after the (n+1)th failed attempt; one attempt
    more than delays, then the message is dead-lettered."""
    delays: tuple[timedelta, ...]
    jitter: float = 0.1

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1


DEFAULT_RETRY = RetryPolicy(tuple(timedelta(seconds=s) for s in (30, 120, 600, 1800, 7200, 21600)))
# The code expires in minutes; retry fast and not for long.
URGENT_RETRY = RetryPolicy(tuple(timedelta(seconds=s) for s in (2, 5, 15, 30, 60)))


def backoff(policy: RetryPolicy, attempts: int, key: str) -> timedelta | None:
    """The wait after `attempts` failed attempts, or None when none is left.
    Jitter is derived from `key` (the message id): retries of many messages
    failed by one outage spread out, yet the schedule is reproducible."""
    if attempts < 1 or attempts >= policy.max_attempts:
        return None
    base = policy.delays[attempts - 1]
    digest = hashlib.sha256(f"{key}:{attempts}".encode()).digest()
    unit = int.from_bytes(digest[:8], "big") / 2**64  # [0, 1)
    return base * (1 + policy.jitter * (2 * unit - 1))


class Outcome(StrEnum):
    SENT = "sent"            # accepted; a receipt may follow
    DELIVERED = "delivered"  # known to have reached the parent
    TRANSIENT = "transient"  # try again later (timeout, 5xx, connection refused)
    PERMANENT = "permanent"  # never retry (invalid number, mailbox refused)


@dataclass(frozen=True)
class AfterAttempt:
    status: Status
    attempts: int
    next_attempt_at: datetime | None = None
    dead_letter: bool = False


def after_attempt(outcome: Outcome, attempts_before: int, now: datetime, policy: RetryPolicy,
                  key: str, *, expires_at: datetime | None = None) -> AfterAttempt:
    """The message's state after one more attempt ended with `outcome`."""
    attempts = attempts_before + 1
    if outcome is Outcome.SENT:
        return AfterAttempt(Status.SENT, attempts)
    if outcome is Outcome.DELIVERED:
        return AfterAttempt(Status.DELIVERED, attempts)
    wait = backoff(policy, attempts, key) if outcome is Outcome.TRANSIENT else None
    if wait is None or (expires_at is not None and now + wait >= expires_at):
        return AfterAttempt(Status.FAILED, attempts, dead_letter=True)
    return AfterAttempt(Status.QUEUED, attempts, next_attempt_at=now + wait)


def expired(expires_at: datetime | None, now: datetime) -> bool:
    """A message past its expiry is never sent (a stale code misleads)."""
    return expires_at is not None and now >= expires_at


_ORDER = {Status.QUEUED: 0, Status.SENDING: 1, Status.SENT: 2, Status.DELIVERED: 3}


def may_move(current: Status, new: Status) -> bool:
    """Statuses only move forward; delivered and failed are final. Receipts
    can overtake our own record of the send, so sending -> delivered is fine,
    and a late 'sent' never undoes 'delivered'."""
    if current in (Status.DELIVERED, Status.FAILED):
        return False
    if new is Status.FAILED:
        return True
    if new is Status.QUEUED:  # a retry after a failed attempt, or a lease lost
        return current is Status.SENDING
    return _ORDER[new] > _ORDER[current]


def why_not_again(status: Status, kind: str, expires_at: datetime | None, now: datetime) -> str | None:
    """An operator may send a failed message again (a fresh schedule), but
    not a code or a one-time link (its text is gone once it fails) nor one
    past its expiry. The refusal's code, or None when it may."""
    if status is not Status.FAILED:
        return "retry_not_failed"
    if kind in SECRET_KINDS:
        return "retry_secret_gone"
    if expired(expires_at, now):
        return "retry_expired"
    return None


# ---------------------------------------------------------------- SMS size

# GSM 03.38 default alphabet (ESC excluded) and the extension table, whose
# characters take two septets (ESC + char).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_MULTI = 160, 153   # septets: one segment / each of several (UDH takes 7)
UCS2_SINGLE, UCS2_MULTI = 70, 67     # UTF-16 code units


@dataclass(frozen=True)
class SmsSize:
    encoding: str      # "GSM-7" or "UCS-2"
    units: int         # septets or UTF-16 code units
    segments: int


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def _pack(widths: list[int], single: int, multi: int) -> int:
    """Segments needed when no character (escape pair, surrogate pair) may be
    split between two segments."""
    total = sum(widths)
    if total == 0:
        return 0
    if total <= single:
        return 1
    segments, used = 1, 0
    for w in widths:
        if used + w > multi:
            segments, used = segments + 1, 0
        used += w
    return segments


def sms_size(text: str) -> SmsSize:
    if is_gsm7(text):
        widths = [2 if c in GSM7_EXTENDED else 1 for c in text]
        return SmsSize("GSM-7", sum(widths), _pack(widths, GSM7_SINGLE, GSM7_MULTI))
    widths = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return SmsSize("UCS-2", sum(widths), _pack(widths, UCS2_SINGLE, UCS2_MULTI))


_TYPOGRAPHIC = str.maketrans({
    "«": '"', "»": '"', "“": '"', "”": '"', "„": '"', "‘": "'", "’": "'",
    "–": "-", "—": "-", "…": "...", "\u00a0": " ", "\u202f": " ",
})


def sms_text(text: str) -> str:
    """The SMS as sent: whitespace collapsed, and typographic punctuation made
    plain when that alone lets the text travel as GSM-7 (a single curly quote
    would otherwise cut a segment from 160 characters to 70)."""
    text = " ".join(text.split())
    plain = text.translate(_TYPOGRAPHIC)
    return plain if is_gsm7(plain) and not is_gsm7(text) else text


# ---------------------------------------------------------------- phone numbers

class InvalidPhone(ValueError):
    pass


def normalize_phone(raw: str) -> str:
    """A Kyrgyz (+996) or Kazakh (+7) mobile number in E.164 (the core's
    rule, kezek/contacts.py), so that one phone has one rate-limit bucket."""
    try:
        return contacts.phone_e164(raw)
    except contacts.ContactError:
        raise InvalidPhone(f"phone {raw!r} is not a +996 or +7 mobile number") from None
