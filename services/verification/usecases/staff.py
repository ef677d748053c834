"""Staff accounts and their sessions: creating an account, signing in and
out, the session behind a cookie, the CSRF token of a session's forms.

Passwords are argon2 hashes; a session is a random token of which only the
SHA-256 is stored."""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kezek import trust
from kezek.db import unit_of_work
from services.verification import domain as d
from services.verification.models import SignInFailure, Staff, StaffSession, utc
from services.verification.usecases.context import Context, StaffView, Throttled, Unauthenticated


# Who adds staff: the administrator at the console (`kezek staff-add`).
CONSOLE = trust.service_principal("cli")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ScopeDirectory(Protocol):
    """Which kindergartens and districts exist (the queue's register)."""

    def kindergarten(self, kindergarten: str) -> dict | None: ...

    def district_exists(self, district: str) -> bool: ...


class ScopeUnchecked(Exception):
    """The directory did not answer."""


def _check_kindergarten(directory: ScopeDirectory | None, kindergarten: str) -> str:
    """The district of an existing kindergarten; refused naming it otherwise."""
    try:
        found = directory.kindergarten(kindergarten) if directory is not None else None
    except ScopeUnchecked as exc:
        raise d.Refused([d.err("kindergarten", "scope_unchecked", detail=str(exc))]) from None
    if directory is None:
        raise d.Refused([d.err("kindergarten", "scope_unchecked", detail="no register to ask")])
    if found is None:
        raise d.Refused([d.err("kindergarten", "kindergarten_unknown", kindergarten=kindergarten)])
    return str(found["district"])


def _check_district(directory: ScopeDirectory | None, district: str) -> None:
    if directory is None:
        raise d.Refused([d.err("district", "scope_unchecked", detail="no register to ask")])
    try:
        known = directory.district_exists(district)
    except ScopeUnchecked as exc:
        raise d.Refused([d.err("district", "scope_unchecked", detail=str(exc))]) from None
    if not known:
        raise d.Refused([d.err("district", "district_unknown", district=district)])


def _failures(row: SignInFailure) -> d.Failures:
    return d.Failures(row.count, utc(row.last_at))


class StaffAccounts:
    def __init__(self, ctx: Context, *, hasher: PasswordHasher | None = None, secret: bytes = b"dev"):
        self.ctx = ctx
        self.hasher = hasher or PasswordHasher()
        self.secret = secret
        # A hash to compare against when the login is unknown, so that the
        # answer takes as long as for a known login.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))

    def add(self, login: str, full_name: str, role: str, district: str, password: str, locale: str = "ru", *,
            kindergarten: str = "", directory: ScopeDirectory | None = None) -> str:
        """A new account. A kindergarten's staff name an existing kindergarten
        (the account takes its district), a district officer an existing
        district: `directory` (the queue) says which exist."""
        login = (login or "").strip().lower()
        kindergarten = (kindergarten or "").strip()
        d.validate_staff(login, full_name, role, district, password, kindergarten)
        if locale not in d.STAFF_LANGUAGES:
            raise d.Refused([d.err("locale", "choice")])
        scope = d.SCOPES[d.Role(role)]
        if scope is d.Scope.KINDERGARTEN:
            district = _check_kindergarten(directory, kindergarten)
        else:
            kindergarten = ""
            if d.Role(role) is d.Role.DISTRICT:
                _check_district(directory, district.strip())
        staff_id = str(uuid.uuid4())
        try:
            with unit_of_work(self.ctx.sessions) as s:
                s.add(Staff(id=staff_id, login=login, password_hash=self.hasher.hash(password),
                            full_name=full_name.strip(), role=role,
                            district="" if d.all_districts(role) else district.strip(), kindergarten=kindergarten,
                            locale=locale, active=True, failed_logins=0, created_at=self.ctx.now()))
                s.flush()
                self.ctx.audit(s, CONSOLE, "staff.add", subject_type="staff", subject_id=staff_id,
                               district=district, login_added=login, role=role, kindergarten=kindergarten or None)
        except IntegrityError:
            raise d.Refused([d.err("login", "login_taken")]) from None
        return staff_id

    def login(self, login: str, password: str, client: str = "") -> tuple[str, StaffView]:
        """Signs in; `client` is the caller's address. Wrong passwords slow
        further attempts from the same client (domain: sign-in throttling),
        they never lock the account."""
        login = (login or "").strip().lower()[:100]
        now = self.ctx.now()
        with unit_of_work(self.ctx.sessions) as s:
            pair = self._failures(s, "p", f"{login}\0{client}", now)
            anywhere = self._failures(s, "c", client, now)
            wait = max(d.sign_in_wait(_failures(pair), d.FREE_FAILURES, now),
                       d.sign_in_wait(_failures(anywhere), d.FREE_FAILURES_PER_CLIENT, now))
            if wait:
                # Not even checked: a guesser learns nothing while waiting.
                failed: Unauthenticated | None = Throttled(math.ceil(wait.total_seconds()))
            else:
                failed = self._check(s, login, password, pair, anywhere, now)
            if failed is None:
                token, view = self._open_session(s, login, password, now)
                s.delete(pair)
        if failed is not None:
            raise failed
        return token, view

    def _failures(self, s: Session, kind: str, value: str, now: datetime) -> SignInFailure:
        """The counter under this key, locked (two guesses at once are counted one after the other)."""
        key = f"{kind}:{hashlib.sha256(value.encode()).hexdigest()}"
        insert = (pg_insert if s.get_bind().dialect.name == "postgresql" else sqlite_insert)(SignInFailure)
        s.execute(insert.values(key=key, count=0, last_at=now).on_conflict_do_nothing())
        return s.get(SignInFailure, key, with_for_update=True, populate_existing=True)

    def _check(self, s: Session, login: str, password: str, pair: SignInFailure, anywhere: SignInFailure,
               now: datetime) -> Unauthenticated | None:
        """None when the password is right; else counts the failure everywhere it counts."""
        staff = s.scalars(sa.select(Staff).where(Staff.login == login).with_for_update()).one_or_none()
        known = staff is not None and staff.active
        if self._check_password(staff.password_hash if known else self._dummy_hash, password) and known:
            return None
        for row in (pair, anywhere):
            counted = d.one_more_failure(_failures(row), now)
            row.count, row.last_at = counted.count, now
        if known:
            staff.failed_logins += 1
            staff.last_failed_at = now
        self.ctx.audit(s, trust.ANONYMOUS, "login", subject_type="login", subject_id=login, outcome="refused",
                       throttled=True if d.wait_after(pair.count, d.FREE_FAILURES) else None)
        s.execute(sa.delete(SignInFailure).where(SignInFailure.last_at < now - d.FAILURES_FORGOTTEN_AFTER))
        return Unauthenticated()

    def _open_session(self, s: Session, login: str, password: str, now: datetime) -> tuple[str, StaffView]:
        staff = s.scalars(sa.select(Staff).where(Staff.login == login)).one()
        notice = None
        if staff.failed_logins:
            notice = {"failed": staff.failed_logins,
                      "last_at": staff.last_failed_at.isoformat() if staff.last_failed_at else None}
        staff.failed_logins, staff.last_failed_at = 0, None
        if self.hasher.check_needs_rehash(staff.password_hash):
            staff.password_hash = self.hasher.hash(password)
        token = secrets.token_urlsafe(32)
        s.add(StaffSession(token_hash=token_hash(token), staff_id=staff.id, created_at=now,
                           expires_at=now + d.SESSION_TTL, notice=notice))
        view = StaffView.of(staff)
        self.ctx.audit(s, view, "login", subject_type="login", subject_id=view.login, district=view.district,
                       told_of_failures=notice and notice["failed"])
        return token, view

    def notice(self, token: str | None) -> dict | None:
        """What the session tells its owner once signed in: the wrong
        passwords given for the account since the last sign-in."""
        if not token:
            return None
        with self.ctx.sessions() as s:
            row = s.get(StaffSession, token_hash(token))
            if row is None or not row.notice:
                return None
            last = row.notice.get("last_at")
            return {"failed": row.notice["failed"], "last_at": self.ctx.local(datetime.fromisoformat(last))
                    if last else None}

    def _check_password(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password or "")
        except (VerificationError, InvalidHashError):
            return False

    def identify(self, token: str | None) -> StaffView:
        if not token:
            raise Unauthenticated("no_session")
        with self.ctx.sessions() as s:
            row = s.execute(sa.select(StaffSession, Staff).join(Staff, Staff.id == StaffSession.staff_id)
                            .where(StaffSession.token_hash == token_hash(token))).one_or_none()
            if row is None or not row.Staff.active or utc(row.StaffSession.expires_at) <= self.ctx.now():
                raise Unauthenticated("no_session")
            return StaffView.of(row.Staff)

    def logout(self, token: str | None) -> None:
        if not token:
            return
        with unit_of_work(self.ctx.sessions) as s:
            row = s.get(StaffSession, token_hash(token))
            if row is not None:
                staff = s.get(Staff, row.staff_id)
                s.delete(row)
                if staff is not None:
                    self.ctx.audit(s, StaffView.of(staff), "logout", subject_type="login", subject_id=staff.login)

    def csrf_token(self, session_token: str) -> str:
        return hmac.new(self.secret, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:32]

    def check_csrf(self, session_token: str | None, given: str | None) -> bool:
        return bool(session_token and given) and hmac.compare_digest(self.csrf_token(session_token), given)

    def commission_members(self, district: str) -> list[Staff]:
        with self.ctx.sessions() as s:
            return list(s.scalars(sa.select(Staff).where(
                Staff.role == d.Role.COMMISSION.value, Staff.district == district, Staff.active)
                .order_by(Staff.full_name)))
