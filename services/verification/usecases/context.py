"""What every use case of the department does the same way: the clock and
calendar of the service's country, the check of role and district (a refused
access is audited), the audit entry, and the one transaction.

A refusal of access is audited in a transaction of its own: the refused work
rolls back, the record of the attempt must not.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from kezek import calendar as kcal
from kezek import trust
from kezek.audit import ACT, LOOK
from kezek.db import unit_of_work
from kezek.files import SealedFiles
from services.verification import domain as d
from services.verification.looking import look_reason
from services.verification.models import Staff, audit_trail, utc
from services.verification.readmodel.views import Views
from services.verification.referrals import ReferralCommands
from workflows.client import ReferralUnavailable


class NotFound(Exception):
    """No such thing in the caller's district (another district's case is
    'not found': its existence is not disclosed)."""


class Forbidden(Exception):
    """The caller's role may not do this."""


class Unauthenticated(Exception):
    def __init__(self, code: str = "login_failed"):
        super().__init__(code)
        self.code = code


class Throttled(Unauthenticated):
    """Too many wrong passwords from this client: heard again after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__("login_throttled")
        self.retry_after = retry_after


class _Denied(Exception):
    """A refused access on its way out of the transaction, to be audited."""

    def __init__(self, action: str, subject_type: str, subject_id: str, public: Exception):
        super().__init__(action)
        self.action, self.subject_type, self.subject_id, self.public = action, subject_type, subject_id, public


@dataclass(frozen=True)
class StaffView:
    """The member of staff a session belongs to (verified, never from the form)."""

    id: str
    login: str
    full_name: str
    role: d.Role
    district: str
    locale: str
    kindergarten: str = ""          # kindergarten staff: the one kindergarten

    def can(self, permission: d.Permission) -> bool:
        return d.can(self.role, permission)

    @property
    def principal(self) -> trust.Principal:
        """The actor the audit trail records (and the other services are told of)."""
        return trust.staff_principal(self.id, self.role.value, district=self.district or None,
                                     kindergarten=self.kindergarten or None)

    @classmethod
    def of(cls, s: Staff) -> "StaffView":
        return cls(s.id, s.login, s.full_name, d.Role(s.role), s.district, s.locale, s.kindergarten or "")


def now_utc() -> datetime:
    return datetime.now(UTC)


class Context:
    """The service's dependencies, shared by its use cases."""

    def __init__(self, sessions: sessionmaker[Session], *, policy: d.VerificationPolicy, files: SealedFiles,
                 referrals: ReferralCommands | None = None, clock: Callable[[], datetime] = now_utc):
        self.sessions = sessions
        self.policy = policy
        self.files = files
        self._referrals = referrals
        self.clock = clock
        self.cal = kcal.calendar(policy.country)
        self.views = Views(self.cal, policy)

    # ------------------------------------------------------------ time

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.cal.local_date(self.clock())

    def local(self, moment: datetime | None) -> datetime | None:
        return self.cal.local(utc(moment)) if moment else None

    @property
    def referrals(self) -> ReferralCommands:
        if self._referrals is None:
            raise ReferralUnavailable("no workflow client configured")
        return self._referrals

    # ------------------------------------------------------------ audit and access

    def audit(self, s: Session, who: StaffView | trust.Principal, action: str, *, subject_type: str = "",
              subject_id: str = "", district: str | None = None, outcome: str = "ok", why: str | None = None,
              **details: Any) -> None:
        """One entry of the audit trail (kezek/audit.py), in the transaction
        of what it records: the verified actor, a look (domain.LOOKS, with
        why: looking.look_reason unless given) or an act, on
        `<subject_type>:<subject_id>`."""
        principal = who.principal if isinstance(who, StaffView) else who
        subject = f"{subject_type}:{subject_id}" if subject_type else subject_id
        look = action in d.LOOKS
        audit_trail.record(s, principal, action, subject[:200], district=district or None, outcome=outcome,
                           kind=LOOK if look else ACT, at=self.now().astimezone(UTC),
                           reason=(why or look_reason(action)) if look else why,
                           details={k: v for k, v in details.items() if v is not None})

    def record_denied(self, actor: StaffView, subject: str) -> None:
        """A refusal at the door (a page the role may not open), in a
        transaction of its own."""
        with unit_of_work(self.sessions) as s:
            self.audit(s, actor, "access.denied", subject_type="page", subject_id=subject, outcome="denied")

    @staticmethod
    def deny(action: str, subject_type: str = "", subject_id: str = "", exc: Exception | None = None) -> _Denied:
        return _Denied(action, subject_type, subject_id, exc or Forbidden(action))

    def require(self, actor: StaffView, permission: d.Permission, action: str,
                subject_type: str = "", subject_id: str = "") -> None:
        if not actor.can(permission):
            raise self.deny(action, subject_type, subject_id)

    def in_district(self, actor: StaffView, district: str | None, action: str, subject_type: str,
                    subject_id: str) -> None:
        if not d.sees_district(actor.role, actor.district, district):
            raise self.deny(action, subject_type, subject_id, NotFound(subject_id))

    def missing(self, action: str, subject_type: str, subject_id: str) -> _Denied:
        """Nothing by that id: refused like another district's thing, and audited."""
        return self.deny(action, subject_type, subject_id, NotFound(subject_id))

    @contextmanager
    def tx(self, actor: StaffView) -> Iterator[Session]:
        """One transaction; a refused access rolls it back and is then
        audited in a transaction of its own (SQLite would deadlock on a
        nested one, and the attempt must be kept whatever happened)."""
        try:
            with unit_of_work(self.sessions) as s:
                yield s
        except _Denied as denied:
            with unit_of_work(self.sessions) as s:
                self.audit(s, actor, denied.action, subject_type=denied.subject_type,
                           subject_id=denied.subject_id, outcome="denied")
            raise denied.public from None
