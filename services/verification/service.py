"""Use cases of the Department of Education's verification work.

Every use case: check the role and the district, load, apply the rules of
domain.py, save with its audit entry and outbox rows in ONE transaction.
A refusal of access is audited in a transaction of its own (the refused
work rolls back, the record of the attempt must not).

Acts on a referral go to its workflow first (an update); what the workflow
answered is then recorded. The facts the queue service publishes about the
referral (referral.*) reach the read model through `Ingest`.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from kezek import calendar as kcal
from kezek.db import unit_of_work
from kezek.events import Event
from kezek.logging import get_logger
from services.verification import domain as d
from services.verification.models import (
    AbuseCase, Applicant, AuditEntry, Certificate, Decision, Referral, ReferralEvent, Scan, Staff,
    StaffSession, VoucherApplication, VoucherDecision, outbox, utc,
)
from services.verification.referrals import ReferralCommands
from workflows.client import ReferralRefused, ReferralUnavailable
from workflows import contracts as wc

log = get_logger(__name__)

LIVE_STATES = ("awaiting_confirmation", "awaiting_enrolment")
CLOSED_STATES = ("enrolled", "cancelled", "privilege_rejected", "paused", "resumed", "expired")


class NotFound(Exception):
    """No such thing in the caller's district (another district's case is
    'not found': its existence is not disclosed)."""


class Forbidden(Exception):
    """The caller's role may not do this."""


class _Denied(Exception):
    def __init__(self, action: str, subject_type: str, subject_id: str, public: Exception):
        super().__init__(action)
        self.action, self.subject_type, self.subject_id, self.public = action, subject_type, subject_id, public


class Unauthenticated(Exception):
    def __init__(self, code: str = "login_failed"):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class StaffView:
    id: str
    login: str
    full_name: str
    role: d.Role
    district: str
    locale: str

    def can(self, permission: d.Permission) -> bool:
        return d.can(self.role, permission)


@dataclass(frozen=True)
class VerificationPolicy:
    country: str = "KG"
    certificate_valid_days: int = d.CERTIFICATE_VALID_DAYS
    max_scan_bytes: int = d.MAX_SCAN_BYTES
    abuse: d.AbusePolicy = d.AbusePolicy()
    vouchers: d.VoucherPolicy = d.VoucherPolicy()


@dataclass(frozen=True)
class DecisionOutcome:
    accepted: bool
    action: str
    result_event: str | None = None
    state: str | None = None
    deadline: datetime | None = None
    refusal: str | None = None
    repeated: bool = False


def _now() -> datetime:
    return datetime.now(UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _staff_view(s: Staff) -> StaffView:
    return StaffView(s.id, s.login, s.full_name, d.Role(s.role), s.district, s.locale)


def full_name(a: Applicant | None) -> str:
    if a is None:
        return ""
    return " ".join(p for p in (a.child_surname, a.child_name, a.child_patronymic) if p)


class VerificationService:
    def __init__(self, sessions: sessionmaker[Session], *, referrals: ReferralCommands | None = None,
                 policy: VerificationPolicy = VerificationPolicy(), clock: Callable[[], datetime] = _now,
                 hasher: PasswordHasher | None = None, secret: bytes = b"dev"):
        self.sessions = sessions
        self.referrals = referrals
        self.policy = policy
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self.secret = secret
        self.cal = kcal.calendar(policy.country)
        # A hash to compare against when the login is unknown, so that the
        # answer takes as long as for a known login.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(8))

    # ------------------------------------------------------------ time

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.cal.local_date(self.clock())

    def local(self, moment: datetime | None) -> datetime | None:
        return self.cal.local(utc(moment)) if moment else None

    # ------------------------------------------------------------ audit

    def _audit(self, s: Session, actor: StaffView | None, action: str, *, subject_type: str = "",
               subject_id: str = "", district: str | None = "", outcome: str = "ok",
               login: str | None = None, **detail: Any) -> None:
        s.add(AuditEntry(
            at=self.now(), actor_id=actor.id if actor else None,
            actor_login=(actor.login if actor else login or "")[:40],
            actor_role=actor.role.value if actor else "", actor_district=actor.district if actor else "",
            action=action, subject_type=subject_type, subject_id=subject_id or "",
            district=district or "", outcome=outcome,
            detail={k: v for k, v in detail.items() if v is not None},
        ))

    def _deny(self, actor: StaffView, action: str, subject_type: str = "", subject_id: str = "",
              exc: Exception | None = None) -> "_Denied":
        return _Denied(action, subject_type, subject_id, exc or Forbidden(action))

    def _require(self, actor: StaffView, permission: d.Permission, action: str,
                 subject_type: str = "", subject_id: str = "") -> None:
        if not actor.can(permission):
            raise self._deny(actor, action, subject_type, subject_id)

    def _in_district(self, actor: StaffView, district: str | None, action: str, subject_type: str,
                     subject_id: str) -> None:
        if not d.sees_district(actor.role, actor.district, district):
            raise self._deny(actor, action, subject_type, subject_id, NotFound(subject_id))

    @contextmanager
    def _tx(self, actor: StaffView) -> Iterator[Session]:
        """One transaction; a refused access rolls it back and is then
        audited in a transaction of its own (SQLite would deadlock on a
        nested one, and the attempt must be kept whatever happened)."""
        try:
            with unit_of_work(self.sessions) as s:
                yield s
        except _Denied as denied:
            with unit_of_work(self.sessions) as s:
                self._audit(s, actor, denied.action, subject_type=denied.subject_type,
                            subject_id=denied.subject_id, outcome="denied")
            raise denied.public from None

    # ------------------------------------------------------------ staff

    def add_staff(self, login: str, full_name_: str, role: str, district: str, password: str,
                  locale: str = "ru") -> str:
        login = (login or "").strip().lower()
        d.validate_staff(login, full_name_, role, district, password)
        if locale not in ("ru", "ky"):
            raise d.Refused([d.err("locale", "choice")])
        staff_id = str(uuid.uuid4())
        try:
            with unit_of_work(self.sessions) as s:
                s.add(Staff(id=staff_id, login=login, password_hash=self.hasher.hash(password),
                            full_name=full_name_.strip(), role=role,
                            district="" if d.all_districts(role) else district.strip(),
                            locale=locale, active=True, failed_logins=0, created_at=self.now()))
                s.flush()
                self._audit(s, None, "staff.add", login="system", subject_type="staff", subject_id=staff_id,
                            district=district, login_added=login, role=role)
        except IntegrityError:
            raise d.Refused([d.err("login", "login_taken")]) from None
        return staff_id

    def login(self, login: str, password: str) -> tuple[str, StaffView]:
        login = (login or "").strip().lower()
        now = self.now()
        with unit_of_work(self.sessions) as s:
            staff = s.scalars(sa.select(Staff).where(Staff.login == login).with_for_update()).one_or_none()
            if staff is None or not staff.active:
                self._check_password(self._dummy_hash, password)
                self._audit(s, None, "login", login=login, outcome="refused")
                failed: Unauthenticated | None = Unauthenticated()
            elif d.login_locked(staff.failed_logins, utc(staff.last_failed_at), now):
                self._audit(s, None, "login", login=login, outcome="refused", locked=True)
                failed = Unauthenticated("login_locked")
            elif not self._check_password(staff.password_hash, password):
                staff.failed_logins += 1
                staff.last_failed_at = now
                self._audit(s, None, "login", login=login, outcome="refused")
                failed = Unauthenticated()
            else:
                failed = None
                staff.failed_logins, staff.last_failed_at = 0, None
                if self.hasher.check_needs_rehash(staff.password_hash):
                    staff.password_hash = self.hasher.hash(password)
                token = secrets.token_urlsafe(32)
                s.add(StaffSession(token_hash=token_hash(token), staff_id=staff.id, created_at=now,
                                   expires_at=now + d.SESSION_TTL))
                view = _staff_view(staff)
                self._audit(s, view, "login", district=view.district)
        if failed is not None:
            raise failed
        return token, view

    def _check_password(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password or "")
        except (VerificationError, InvalidHashError):
            return False

    def identify(self, token: str | None) -> StaffView:
        if not token:
            raise Unauthenticated("no_session")
        with self.sessions() as s:
            row = s.execute(sa.select(StaffSession, Staff).join(Staff, Staff.id == StaffSession.staff_id)
                            .where(StaffSession.token_hash == token_hash(token))).one_or_none()
            if row is None or not row.Staff.active or utc(row.StaffSession.expires_at) <= self.now():
                raise Unauthenticated("no_session")
            return _staff_view(row.Staff)

    def logout(self, token: str | None) -> None:
        if not token:
            return
        with unit_of_work(self.sessions) as s:
            row = s.get(StaffSession, token_hash(token))
            if row is not None:
                staff = s.get(Staff, row.staff_id)
                s.delete(row)
                if staff is not None:
                    self._audit(s, _staff_view(staff), "logout")

    def csrf_token(self, session_token: str) -> str:
        return hmac.new(self.secret, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()[:32]

    def check_csrf(self, session_token: str | None, given: str | None) -> bool:
        return bool(session_token and given) and hmac.compare_digest(self.csrf_token(session_token), given)

    def commission_members(self, district: str) -> list[Staff]:
        with self.sessions() as s:
            return list(s.scalars(sa.select(Staff).where(
                Staff.role == d.Role.COMMISSION.value, Staff.district == district, Staff.active)
                .order_by(Staff.full_name)))

    # ------------------------------------------------------------ reading

    def _history(self, s: Session, pins: Iterable[str]) -> dict[str, list[dict]]:
        """Every referral of each child (by PIN, across applications), oldest first."""
        pins = [p for p in set(pins) if p]
        if not pins:
            return {}
        rows = s.execute(
            sa.select(Referral, Applicant.child_pin)
            .join(Applicant, Applicant.application_id == Referral.application_id)
            .where(Applicant.child_pin.in_(pins))
            .order_by(Referral.issued_at, Referral.referral_id)).all()
        out: dict[str, list[dict]] = {}
        for ref, pin in rows:
            out.setdefault(pin, []).append({
                "referral_id": ref.referral_id, "application_id": ref.application_id,
                "kindergarten": ref.kindergarten_name or ref.kindergarten_id or "",
                "category": ref.category or "", "state": ref.state,
                "issued_at": self.local(ref.issued_at), "closed_at": self.local(ref.closed_at),
                "reason": ref.reason,
            })
        return out

    def _open_abuse(self, s: Session, pins: Iterable[str]) -> dict[str, str]:
        pins = [p for p in set(pins) if p]
        if not pins:
            return {}
        return dict(s.execute(sa.select(AbuseCase.child_pin, AbuseCase.id)
                              .where(AbuseCase.child_pin.in_(pins), AbuseCase.status == "open")).all())

    def _latest_certificates(self, s: Session, referral_ids: Iterable[str]) -> dict[str, Certificate]:
        ids = list(referral_ids)
        if not ids:
            return {}
        out: dict[str, Certificate] = {}
        for cert in s.scalars(sa.select(Certificate).where(Certificate.referral_id.in_(ids))
                              .order_by(Certificate.recorded_at)):
            out[cert.referral_id] = cert   # the last one recorded wins
        return out

    def _certificate_view(self, cert: Certificate | None, today: date) -> dict | None:
        if cert is None:
            return None
        valid_days = self.policy.certificate_valid_days
        return {
            "id": cert.id, "organisation": cert.organisation, "number": cert.number,
            "issued_on": cert.issued_on, "valid_until": d.certificate_valid_until(cert.issued_on, valid_days),
            "in_date": d.certificate_in_date(cert.issued_on, today, valid_days),
            "sha256": cert.scan_sha256, "scan_name": cert.scan_name, "recorded_at": self.local(cert.recorded_at),
        }

    def _deadline_view(self, deadline: datetime | None, today: date) -> dict:
        local = self.local(deadline)
        if local is None:
            return {"deadline": None, "last_day": None, "days_left": None, "working_days_left": None}
        last = d.last_day(local)
        left = d.days_left(local, today)
        # Working days after today (today is shown as "last day" when it is).
        working = self.cal.working_days_between(today + timedelta(days=1), last) if left > 0 else 0
        return {"deadline": local, "last_day": last, "days_left": left, "working_days_left": working}

    def worklist(self, actor: StaffView, district: str | None = None) -> dict:
        """Referrals waiting for privilege confirmation in the caller's
        district, the nearest deadline first."""
        scoped = not d.all_districts(actor.role)
        if scoped:
            district = actor.district
        today = self.today()
        with self._tx(actor) as s:
            self._require(actor, d.Permission.WORKLIST, "worklist.view")
            q = (sa.select(Referral, Applicant)
                 .outerjoin(Applicant, Applicant.application_id == Referral.application_id)
                 .where(Referral.state == d.OPEN_STATE))
            if scoped or district:
                # Never unfiltered for a district role, even with no district.
                q = q.where(Applicant.district == (district or ""))
            q = q.order_by(Referral.deadline.is_(None), Referral.deadline, Referral.referral_id)
            rows = s.execute(q).all()
            pins = [a.child_pin for _, a in rows if a is not None and a.child_pin]
            history = self._history(s, pins)
            abuse = self._open_abuse(s, pins)
            certs = self._latest_certificates(s, [r.referral_id for r, _ in rows])
            items = []
            for ref, app in rows:
                pin = app.child_pin if app else None
                items.append({
                    "referral_id": ref.referral_id, "application_id": ref.application_id,
                    "category": ref.category or "", "child": full_name(app), "child_pin": pin,
                    "birth_date": app.child_birth_date if app else None,
                    "parent_phone": app.parent_phone if app else None,
                    "parent_email": app.parent_email if app else None,
                    "district": app.district if app else None,
                    "kindergarten": ref.kindergarten_name or ref.kindergarten_id or "",
                    "certificate_requests": ref.certificate_requests,
                    "certificate": self._certificate_view(certs.get(ref.referral_id), today),
                    "earlier": [h for h in history.get(pin, []) if h["referral_id"] != ref.referral_id],
                    "abuse_case": abuse.get(pin) if pin else None,
                    **self._deadline_view(ref.deadline, today),
                })
            self._audit(s, actor, "worklist.view", subject_type="district", subject_id=district or "*",
                        district=district or "", referrals=[i["referral_id"] for i in items][:200])
        return {"items": items, "district": district, "today": today}

    def _load_case(self, s: Session, actor: StaffView, referral_id: str, action: str,
                   permission: d.Permission) -> tuple[Referral, Applicant | None]:
        self._require(actor, permission, action, "referral", referral_id)
        ref = s.get(Referral, referral_id)
        if ref is None:
            raise self._deny(actor, action, "referral", referral_id, NotFound(referral_id))
        app = s.get(Applicant, ref.application_id)
        self._in_district(actor, app.district if app else None, action, "referral", referral_id)
        return ref, app

    def case(self, actor: StaffView, referral_id: str) -> dict:
        today = self.today()
        with self._tx(actor) as s:
            ref, app = self._load_case(s, actor, referral_id, "case.view", d.Permission.CASE_VIEW)
            pin = app.child_pin if app else None
            certs = list(s.scalars(sa.select(Certificate).where(Certificate.referral_id == referral_id)
                                   .order_by(Certificate.recorded_at.desc())))
            decisions = list(s.scalars(sa.select(Decision).where(Decision.referral_id == referral_id)
                                       .order_by(Decision.at.desc())))
            staff_names = dict(s.execute(sa.select(Staff.id, Staff.full_name)).all())
            events = list(s.scalars(sa.select(ReferralEvent).where(ReferralEvent.referral_id == referral_id)
                                    .order_by(ReferralEvent.at, ReferralEvent.seq)))
            abuse = list(s.scalars(sa.select(AbuseCase).where(AbuseCase.child_pin == pin)
                                   .order_by(AbuseCase.opened_at.desc()))) if pin else []
            history = self._history(s, [pin] if pin else []).get(pin, [])
            timeline = sorted(
                [{"at": self.local(e.at), "kind": "event", "type": e.type, "reason": e.reason} for e in events]
                + [{"at": self.local(x.at), "kind": "decision", "action": x.action, "outcome": x.outcome,
                    "result_event": x.result_event, "refusal": x.refusal, "reason": x.reason,
                    "by": staff_names.get(x.staff_id, x.staff_id)} for x in decisions]
                + [{"at": self.local(c.recorded_at), "kind": "certificate", "organisation": c.organisation,
                    "number": c.number, "issued_on": c.issued_on,
                    "by": staff_names.get(c.recorded_by, c.recorded_by)} for c in certs],
                key=lambda x: x["at"])
            latest = self._certificate_view(certs[0], today) if certs else None
            open_ = ref.state == d.OPEN_STATE
            view = {
                "referral_id": ref.referral_id, "application_id": ref.application_id, "state": ref.state,
                "open": open_, "category": ref.category or "", "needs_confirmation": ref.needs_confirmation,
                "kindergarten": ref.kindergarten_name or ref.kindergarten_id or "",
                "issued_at": self.local(ref.issued_at), "closed_at": self.local(ref.closed_at),
                "reason": ref.reason, "certificate_requests": ref.certificate_requests,
                "child": full_name(app), "child_pin": pin,
                "birth_date": app.child_birth_date if app else None,
                "queue_date": self.local(app.queue_date) if app else None,
                "parent_phone": app.parent_phone if app else None,
                "parent_email": app.parent_email if app else None,
                "district": app.district if app else None,
                "certificate": latest,
                "certificates": [self._certificate_view(c, today) for c in certs],
                "decisions": [{"nonce": x.nonce, "action": x.action, "outcome": x.outcome,
                               "accepted": x.outcome == "accepted", "result_event": x.result_event,
                               "reason": x.reason, "refusal": x.refusal, "at": self.local(x.at),
                               "by": staff_names.get(x.staff_id, x.staff_id)} for x in decisions],
                "timeline": timeline,
                "earlier": [h for h in history if h["referral_id"] != ref.referral_id],
                "abuse": [{"id": a.id, "status": a.status, "cycles": a.cycles,
                           "opened_at": self.local(a.opened_at)} for a in abuse],
                "can_act": actor.can(d.Permission.CASE_ACT) and open_,
                "can_confirm": bool(open_ and latest and latest["in_date"]),
                "can_request_certificate": bool(open_ and latest and not latest["in_date"]),
                "today": today, "valid_days": self.policy.certificate_valid_days,
                "max_scan_mb": self.policy.max_scan_bytes / (1024 * 1024),
                **self._deadline_view(ref.deadline, today),
            }
            self._audit(s, actor, "case.view", subject_type="referral", subject_id=referral_id,
                        district=view["district"], application_id=ref.application_id)
        return view

    def scan(self, actor: StaffView, referral_id: str, certificate_id: str) -> tuple[bytes, str, str]:
        with self._tx(actor) as s:
            ref, app = self._load_case(s, actor, referral_id, "scan.view", d.Permission.CASE_VIEW)
            cert = s.get(Certificate, certificate_id)
            if cert is None or cert.referral_id != ref.referral_id:
                raise NotFound(certificate_id)
            scan = s.get(Scan, cert.scan_sha256)
            assert scan is not None
            self._audit(s, actor, "scan.view", subject_type="referral", subject_id=referral_id,
                        district=app.district if app else None, certificate_id=certificate_id)
            return scan.data, scan.content_type, scan.sha256

    # ------------------------------------------------------------ acting on a case

    def record_certificate(self, actor: StaffView, referral_id: str, *, organisation: str, number: str,
                           issued_on: str, scan: bytes, scan_name: str = "") -> dict:
        """Records the certificate and its scan; answers whether it is in date."""
        today = self.today()
        with self._tx(actor) as s:
            ref, app = self._load_case(s, actor, referral_id, "certificate.record", d.Permission.CASE_ACT)
            errors: list[d.FieldError] = []
            if ref.state != d.OPEN_STATE:
                raise d.Refused([d.err("case", "case_closed", state=ref.state)])
            try:
                data = d.validate_certificate(organisation, number, issued_on, today)
            except d.Refused as exc:
                errors += exc.errors
            try:
                kind = d.check_scan(scan, self.policy.max_scan_bytes)
            except d.Refused as exc:
                errors += exc.errors
            if errors:
                raise d.Refused(errors)
            sha = hashlib.sha256(scan).hexdigest()
            if s.get(Scan, sha) is None:
                s.add(Scan(sha256=sha, content_type=kind.content_type, size=len(scan), data=scan,
                           stored_at=self.now()))
                s.flush()
            cert = Certificate(id=str(uuid.uuid4()), referral_id=ref.referral_id,
                               organisation=data.organisation, number=data.number, issued_on=data.issued_on,
                               scan_sha256=sha, scan_name=(scan_name or "")[-200:], recorded_by=actor.id,
                               recorded_at=self.now())
            s.add(cert)
            s.flush()
            valid_days = self.policy.certificate_valid_days
            in_date = d.certificate_in_date(data.issued_on, today, valid_days)
            until = d.certificate_valid_until(data.issued_on, valid_days)
            outbox.add(s, "verification.certificate_recorded.v1", ref.referral_id, {
                "certificate_id": cert.id, "referral_id": ref.referral_id, "application_id": ref.application_id,
                "issued_on": data.issued_on.isoformat(), "valid_until": until.isoformat(), "in_date": in_date,
                "scan_sha256": sha, "recorded_by": actor.id,
            })
            self._audit(s, actor, "certificate.record", subject_type="referral", subject_id=ref.referral_id,
                        district=app.district if app else None, certificate_id=cert.id,
                        issued_on=data.issued_on.isoformat(), in_date=in_date, scan_sha256=sha)
        return {"certificate_id": cert.id, "in_date": in_date, "valid_until": until, "sha256": sha}

    def _prepare_decision(self, actor: StaffView, referral_id: str, action: d.Action, reason: str,
                          nonce: str) -> tuple[DecisionOutcome | None, dict]:
        today = self.today()
        audit_action = f"case.{action.value}"
        with self._tx(actor) as s:
            ref, app = self._load_case(s, actor, referral_id, audit_action, d.Permission.CASE_ACT)
            done = s.scalars(sa.select(Decision).where(Decision.nonce == nonce)).one_or_none()
            if done is not None:
                # The same form sent twice: one act.
                return DecisionOutcome(done.outcome == "accepted", done.action, done.result_event,
                                       ref.state, utc(ref.deadline), done.refusal, repeated=True), {}
            cert = self._latest_certificates(s, [referral_id]).get(referral_id)
            d.check_action(action, ref.state, d.Certificate(cert.issued_on) if cert else None, today,
                           reason, self.policy.certificate_valid_days)
            return None, {"application_id": ref.application_id, "district": app.district if app else None,
                          "certificate_id": cert.id if cert else None,
                          "certificate_issued": cert.issued_on if cert else None}

    async def decide(self, actor: StaffView, referral_id: str, action: d.Action | str, *, reason: str = "",
                     nonce: str = "") -> DecisionOutcome:
        """Confirm, reject, or ask for a fresh certificate: an update on the
        referral's workflow; a refusal comes back with the workflow's reason."""
        action = d.Action(action)
        nonce = (nonce or uuid.uuid4().hex)[:64]
        reason = " ".join((reason or "").split())
        repeated, ctx = await asyncio.to_thread(self._prepare_decision, actor, referral_id, action, reason, nonce)
        if repeated is not None:
            return repeated
        if self.referrals is None:
            raise ReferralUnavailable("no workflow client configured")
        acted_at = self.now()
        actor_ref = f"caseworker:{actor.id}"
        update_id = f"verification-{nonce}"
        try:
            if action is d.Action.REJECT:
                result = await self.referrals.reject(
                    referral_id, wc.RejectPrivilege(acted_at=acted_at, actor=actor_ref, reason=reason), update_id)
            else:
                # Asking for a fresh certificate is the workflow's answer to an
                # out-of-date one: it records referral.certificate_requested
                # and keeps the window running.
                result = await self.referrals.confirm(
                    referral_id, wc.ConfirmPrivilege(acted_at=acted_at, actor=actor_ref,
                                                     certificate_issued=ctx["certificate_issued"]), update_id)
        except ReferralRefused as exc:
            await asyncio.to_thread(self._record_refusal, actor, referral_id, action, reason, nonce, exc.reason, ctx,
                                    exc.state)
            return DecisionOutcome(False, action.value, refusal=exc.reason)
        except ReferralUnavailable as exc:
            await asyncio.to_thread(self._record_failure, actor, referral_id, action, str(exc), ctx)
            raise
        return await asyncio.to_thread(self._record_acceptance, actor, referral_id, action, reason, nonce,
                                       result, ctx)

    def _record_acceptance(self, actor: StaffView, referral_id: str, action: d.Action, reason: str, nonce: str,
                           result: wc.ActResult, ctx: dict) -> DecisionOutcome:
        now = self.now()
        decision_id = str(uuid.uuid4())
        with unit_of_work(self.sessions) as s:
            s.add(Decision(id=decision_id, referral_id=referral_id, action=action.value, outcome="accepted",
                           result_event=result.event, reason=reason or result.reason, refusal=None,
                           certificate_id=ctx["certificate_id"], staff_id=actor.id, nonce=nonce, at=now))
            ref = s.get(Referral, referral_id, with_for_update=True)
            if ref is not None:
                # The queue's referral.* fact will say the same; until it
                # arrives the worklist already shows what the workflow did.
                # (The count of requests comes from the facts alone: the
                # fact may arrive before or after this, never counted twice.)
                _apply_state(ref, result.state.value, deadline=result.deadline, at=now, reason=result.reason)
            outbox.add(s, "verification.decision_recorded.v1", referral_id, {
                "decision_id": decision_id, "referral_id": referral_id, "application_id": ctx["application_id"],
                "action": action.value, "result_event": result.event, "state": result.state.value,
                "deadline": result.deadline.isoformat() if result.deadline else None,
                "certificate_id": ctx["certificate_id"], "reason": reason or result.reason,
                "decided_by": actor.id, "decided_at": now.isoformat(),
            }, time=now)
            self._audit(s, actor, f"case.{action.value}", subject_type="referral", subject_id=referral_id,
                        district=ctx["district"], result_event=result.event, state=result.state.value,
                        reason=reason or None, certificate_id=ctx["certificate_id"])
        return DecisionOutcome(True, action.value, result.event, result.state.value, result.deadline,
                               result.reason)

    def _record_refusal(self, actor: StaffView, referral_id: str, action: d.Action, reason: str, nonce: str,
                        refusal: str, ctx: dict, closed_state: str | None = None) -> None:
        with unit_of_work(self.sessions) as s:
            if closed_state in CLOSED_STATES:
                # The workflow knows first: the referral closed while its fact
                # was still on the way to this service.
                ref = s.get(Referral, referral_id)
                if ref is not None:
                    _apply_state(ref, closed_state, at=self.now())
            s.add(Decision(id=str(uuid.uuid4()), referral_id=referral_id, action=action.value, outcome="refused",
                           result_event=None, reason=reason or None, refusal=refusal[:1000],
                           certificate_id=ctx["certificate_id"], staff_id=actor.id, nonce=nonce, at=self.now()))
            self._audit(s, actor, f"case.{action.value}", subject_type="referral", subject_id=referral_id,
                        district=ctx["district"], outcome="refused", refusal=refusal[:500])

    def _record_failure(self, actor: StaffView, referral_id: str, action: d.Action, error: str, ctx: dict) -> None:
        with unit_of_work(self.sessions) as s:
            self._audit(s, actor, f"case.{action.value}", subject_type="referral", subject_id=referral_id,
                        district=ctx["district"], outcome="failed", error=error[:500])

    # ------------------------------------------------------------ abuse

    def abuse_cases(self, actor: StaffView, status: str = "open") -> list[dict]:
        with self._tx(actor) as s:
            self._require(actor, d.Permission.ABUSE_VIEW, "abuse.list")
            q = sa.select(AbuseCase, Applicant).outerjoin(
                Applicant, Applicant.application_id == AbuseCase.application_id)
            if status:
                q = q.where(AbuseCase.status == status)
            if not d.all_districts(actor.role):
                q = q.where(AbuseCase.district == actor.district)
            rows = s.execute(q.order_by(AbuseCase.opened_at.desc())).all()
            out = [{"id": a.id, "status": a.status, "cycles": a.cycles, "applications": a.applications,
                    "child": full_name(app), "child_pin": a.child_pin, "district": a.district,
                    "opened_at": self.local(a.opened_at)} for a, app in rows]
            self._audit(s, actor, "abuse.list", subject_type="district", subject_id=actor.district or "*",
                        district=actor.district, cases=[x["id"] for x in out][:200])
        return out

    def _load_abuse(self, s: Session, actor: StaffView, case_id: str, action: str,
                    permission: d.Permission) -> AbuseCase:
        self._require(actor, permission, action, "abuse_case", case_id)
        case = s.get(AbuseCase, case_id)
        if case is None:
            raise self._deny(actor, action, "abuse_case", case_id, NotFound(case_id))
        self._in_district(actor, case.district, action, "abuse_case", case_id)
        return case

    def abuse_case(self, actor: StaffView, case_id: str) -> dict:
        with self._tx(actor) as s:
            case = self._load_abuse(s, actor, case_id, "abuse.view", d.Permission.ABUSE_VIEW)
            app = s.get(Applicant, case.application_id)
            history = self._history(s, [case.child_pin]).get(case.child_pin, [])
            live = self._live_privileged_referral(s, case.child_pin)
            view = {"id": case.id, "status": case.status, "rule": case.rule, "cycles": case.cycles,
                    "applications": case.applications, "referral_ids": list(case.referral_ids),
                    "child": full_name(app), "child_pin": case.child_pin, "application_id": case.application_id,
                    "category": app.category if app else None, "district": case.district,
                    "parent_phone": app.parent_phone if app else None,
                    "opened_at": self.local(case.opened_at), "resolved_at": self.local(case.resolved_at),
                    "resolution": case.resolution, "history": history,
                    "live_referral": live.referral_id if live else None,
                    "can_resolve": actor.can(d.Permission.ABUSE_RESOLVE) and case.status == "open"}
            self._audit(s, actor, "abuse.view", subject_type="abuse_case", subject_id=case_id,
                        district=case.district)
        return view

    def _live_privileged_referral(self, s: Session, pin: str) -> Referral | None:
        return s.scalars(
            sa.select(Referral).join(Applicant, Applicant.application_id == Referral.application_id)
            .where(Applicant.child_pin == pin, Referral.state == d.OPEN_STATE)
            .order_by(Referral.issued_at.desc())).first()

    def _prepare_revocation(self, actor: StaffView, case_id: str, reason: str) -> dict:
        with self._tx(actor) as s:
            case = self._load_abuse(s, actor, case_id, "abuse.revoke", d.Permission.ABUSE_RESOLVE)
            if case.status != "open":
                raise d.Refused([d.err("case", "case_closed", state=case.status)])
            text = d.validate_resolution(reason)
            live = self._live_privileged_referral(s, case.child_pin)
            current = s.scalars(sa.select(Applicant).where(Applicant.child_pin == case.child_pin)
                                .order_by(Applicant.queue_date.desc())).first()
            return {"reason": text, "district": case.district, "referral_id": live.referral_id if live else None,
                    "application_id": current.application_id if current else case.application_id,
                    "from_category": (current.category if current else None) or "privileged"}

    async def revoke_privilege(self, actor: StaffView, case_id: str, reason: str) -> dict:
        """A privilege found false: the live referral awaiting confirmation, if
        any, is rejected through its workflow (place back to the register,
        child to the general queue); verification.privilege_revoked tells the
        queue service to keep the child in the general queue in any case."""
        ctx = await asyncio.to_thread(self._prepare_revocation, actor, case_id, reason)
        rejected, refusal = False, None
        if ctx["referral_id"]:
            if self.referrals is None:
                raise ReferralUnavailable("no workflow client configured")
            try:
                await self.referrals.reject(ctx["referral_id"], wc.RejectPrivilege(
                    acted_at=self.now(), actor=f"caseworker:{actor.id}",
                    reason=f"privilege revoked: {ctx['reason']}"[:500]), f"revoke-{case_id}")
                rejected = True
            except ReferralRefused as exc:
                # The referral closed meanwhile; the event still revokes the privilege.
                refusal = exc.reason
        return await asyncio.to_thread(self._record_revocation, actor, case_id, ctx, rejected, refusal)

    def _record_revocation(self, actor: StaffView, case_id: str, ctx: dict, rejected: bool,
                           refusal: str | None) -> dict:
        now = self.now()
        with unit_of_work(self.sessions) as s:
            case = s.get(AbuseCase, case_id, with_for_update=True)
            assert case is not None
            case.status, case.resolved_by, case.resolved_at = "revoked", actor.id, now
            case.resolution = ctx["reason"]
            case.rejected_referral_id = ctx["referral_id"] if rejected else None
            for app in s.scalars(sa.select(Applicant).where(Applicant.child_pin == case.child_pin)):
                app.category = "general"
            if rejected:
                ref = s.get(Referral, ctx["referral_id"])
                if ref is not None:
                    _apply_state(ref, "privilege_rejected", at=now, reason=ctx["reason"])
            outbox.add(s, "verification.privilege_revoked.v1", ctx["application_id"], {
                "case_id": case_id, "application_id": ctx["application_id"],
                "from_category": ctx["from_category"], "to_category": "general", "reason": ctx["reason"],
                "revoked_at": now.isoformat(), "referral_id": ctx["referral_id"] if rejected else None,
                "referral_rejected": rejected, "revoked_by": actor.id,
            }, time=now)
            self._audit(s, actor, "abuse.revoke", subject_type="abuse_case", subject_id=case_id,
                        district=ctx["district"], referral_id=ctx["referral_id"], referral_rejected=rejected,
                        refusal=refusal, reason=ctx["reason"])
        return {"referral_rejected": rejected, "referral_id": ctx["referral_id"], "refusal": refusal}

    def dismiss_abuse(self, actor: StaffView, case_id: str, note: str) -> None:
        with self._tx(actor) as s:
            case = self._load_abuse(s, actor, case_id, "abuse.dismiss", d.Permission.ABUSE_RESOLVE)
            if case.status != "open":
                raise d.Refused([d.err("case", "case_closed", state=case.status)])
            text = d.validate_resolution(note)
            case.status, case.resolved_by, case.resolved_at, case.resolution = "dismissed", actor.id, self.now(), text
            self._audit(s, actor, "abuse.dismiss", subject_type="abuse_case", subject_id=case_id,
                        district=case.district, reason=text)

    # ------------------------------------------------------------ vouchers

    def vouchers(self, actor: StaffView) -> list[dict]:
        with self._tx(actor) as s:
            self._require(actor, d.Permission.VOUCHER_VIEW, "voucher.list")
            q = sa.select(VoucherApplication, Applicant).outerjoin(
                Applicant, Applicant.application_id == VoucherApplication.application_id)
            if not d.all_districts(actor.role):
                q = q.where(VoucherApplication.district == actor.district)
            rows = s.execute(q.order_by((VoucherApplication.status != "pending"),
                                        VoucherApplication.submitted_at)).all()
            out = [{"application_id": v.application_id, "status": v.status, "category": v.category,
                    "child": full_name(a), "submitted_at": self.local(v.submitted_at), "district": v.district}
                   for v, a in rows]
            self._audit(s, actor, "voucher.list", subject_type="district", subject_id=actor.district or "*",
                        district=actor.district, applications=[x["application_id"] for x in out][:200])
        return out

    def _load_voucher(self, s: Session, actor: StaffView, application_id: str, action: str,
                      permission: d.Permission) -> tuple[VoucherApplication, Applicant | None]:
        self._require(actor, permission, action, "voucher", application_id)
        v = s.get(VoucherApplication, application_id)
        if v is None:
            raise self._deny(actor, action, "voucher", application_id, NotFound(application_id))
        self._in_district(actor, v.district, action, "voucher", application_id)
        return v, s.get(Applicant, application_id)

    def voucher(self, actor: StaffView, application_id: str, *, printing: bool = False) -> dict:
        action = "voucher.print" if printing else "voucher.view"
        with self._tx(actor) as s:
            v, app = self._load_voucher(s, actor, application_id, action, d.Permission.VOUCHER_VIEW)
            dec = s.scalars(sa.select(VoucherDecision).where(VoucherDecision.application_id == application_id)
                            ).one_or_none()
            staff_names = dict(s.execute(sa.select(Staff.id, Staff.full_name)).all())
            view = {
                "application_id": v.application_id, "status": v.status, "category": v.category,
                "district": v.district, "submitted_at": self.local(v.submitted_at),
                "child": full_name(app), "child_pin": app.child_pin if app else None,
                "birth_date": app.child_birth_date if app else None,
                "parent_phone": app.parent_phone if app else None,
                "parent_email": app.parent_email if app else None,
                "queue_date": self.local(app.queue_date) if app else None,
                "decision": None if dec is None else {
                    "number": dec.number, "decision": dec.decision, "benefit_type": dec.benefit_type,
                    "documents": list(dec.documents), "reason": dec.reason, "members": list(dec.members),
                    "decided_at": self.local(dec.decided_at), "decided_by": staff_names.get(dec.decided_by, ""),
                },
                "can_decide": actor.can(d.Permission.VOUCHER_DECIDE) and dec is None,
                "policy": self.policy.vouchers,
            }
            self._audit(s, actor, action, subject_type="voucher", subject_id=application_id, district=v.district)
        return view

    def decide_voucher(self, actor: StaffView, application_id: str, *, decision: str, benefit_type: str,
                       documents: Iterable[str], reason: str, members: Iterable[str] = ()) -> int:
        now = self.now()
        try:
            with self._tx(actor) as s:
                v, app = self._load_voucher(s, actor, application_id, "voucher.decide", d.Permission.VOUCHER_DECIDE)
                if v.status != "pending":
                    raise d.Refused([d.err("decision", "already_decided")])
                colleagues = {m.login: m.full_name for m in s.scalars(sa.select(Staff).where(
                    Staff.role == d.Role.COMMISSION.value, Staff.district == (v.district or ""), Staff.active))}
                result = d.validate_voucher_decision(decision, benefit_type, documents, reason, members,
                                                     colleagues, self.policy.vouchers)
                present = list(dict.fromkeys((actor.login, *result.members)))
                dec = VoucherDecision(
                    application_id=application_id, decision=result.decision.value,
                    benefit_type=result.benefit_type, documents=list(result.documents), reason=result.reason,
                    members=[{"login": m, "name": colleagues.get(m, actor.full_name)} for m in present],
                    district=v.district, decided_by=actor.id, decided_at=now)
                s.add(dec)
                s.flush()
                v.status = result.decision.value
                outbox.add(s, "verification.voucher_decided.v1", application_id, {
                    "application_id": application_id, "parent_id": app.parent_id if app else None,
                    "decision": result.decision.value, "benefit_type": result.benefit_type,
                    "reason": result.reason, "decision_number": dec.number, "decided_at": now.isoformat(),
                }, time=now)
                self._audit(s, actor, "voucher.decide", subject_type="voucher", subject_id=application_id,
                            district=v.district, decision=result.decision.value, benefit_type=result.benefit_type,
                            documents=list(result.documents), number=dec.number)
                return dec.number
        except IntegrityError:
            # Two members deciding at once: the unique application id decides.
            raise d.Refused([d.err("decision", "already_decided")]) from None

    # ------------------------------------------------------------ audit search

    def search_audit(self, actor: StaffView, query: d.AuditQuery) -> list[dict]:
        with self._tx(actor) as s:
            self._require(actor, d.Permission.AUDIT_SEARCH, "audit.search")
            q = sa.select(AuditEntry)
            if not d.all_districts(actor.role):
                # A supervisor sees what happened in the district and what
                # the district's staff did.
                q = q.where(sa.or_(AuditEntry.district == actor.district,
                                   AuditEntry.actor_district == actor.district))
            if query.actor:
                q = q.where(AuditEntry.actor_login == query.actor.lower())
            if query.action:
                q = q.where(AuditEntry.action.startswith(query.action, autoescape=True))
            if query.subject:
                q = q.where(AuditEntry.subject_id == query.subject)
            if query.date_from:
                q = q.where(AuditEntry.at >= self.cal.start_of_day(query.date_from).astimezone(UTC))
            if query.date_to:
                q = q.where(AuditEntry.at < self.cal.start_of_day(query.date_to + timedelta(days=1)).astimezone(UTC))
            rows = list(s.scalars(q.order_by(AuditEntry.seq.desc()).limit(query.limit)))
            out = [{"seq": r.seq, "at": self.local(r.at), "actor": r.actor_login, "role": r.actor_role,
                    "action": r.action, "subject_type": r.subject_type, "subject_id": r.subject_id,
                    "district": r.district, "outcome": r.outcome, "detail": r.detail} for r in rows]
            self._audit(s, actor, "audit.search", district=actor.district, actor_filter=query.actor or None,
                        action_filter=query.action or None, subject_filter=query.subject or None)
        return out


# ---------------------------------------------------------------- read model

_STATE_OF_EVENT = {
    "referral.privilege_confirmed.v1": "awaiting_enrolment",
    "referral.privilege_rejected.v1": "privilege_rejected",
    "referral.cancelled.v1": "cancelled",
    "referral.expired.v1": "paused",
    "referral.enrolled.v1": "enrolled",
}
REFERRAL_EVENTS = ("referral.issued.v1", "referral.imported.v1", "referral.certificate_requested.v1",
                   "referral.extended.v1", *_STATE_OF_EVENT)
APPLICATION_EVENTS = ("application.submitted.v1", "application.received.v1",
                      "application.returned_to_general_queue.v1", "application.removed.v1")


def _apply_state(ref: Referral, state: str, *, deadline: datetime | None = None, at: datetime,
                 reason: str | None = None) -> None:
    """Moves the read model forward; a closed referral never reopens (facts
    may arrive late or twice)."""
    if ref.state in CLOSED_STATES and state not in CLOSED_STATES:
        return
    ref.state = state
    if deadline is not None:
        ref.deadline = deadline
    if state in CLOSED_STATES:
        ref.closed_at = ref.closed_at or at
        ref.deadline = None
    if reason:
        ref.reason = reason[:500]
    ref.updated_at = at


def _dt(raw: Any) -> datetime | None:
    if not raw:
        return None
    value = datetime.fromisoformat(str(raw))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Ingest:
    """Builds the worklist's read model from the queue's and registration's
    facts, and runs the abuse rule when a child takes a privileged referral.
    Called inside the consumer's transaction (idempotent by event id)."""

    policy: VerificationPolicy = field(default_factory=VerificationPolicy)
    clock: Callable[[], datetime] = _now

    def __call__(self, s: Session, event: Event) -> None:
        data = event.data
        t = event.type
        if t == "application.submitted.v1":
            app = self._applicant(s, data["application_id"], event)
            app.child_pin = data["child_pin"]
            app.child_surname, app.child_name = data["child_surname"], data["child_name"]
            app.child_patronymic = data.get("child_patronymic")
            app.child_birth_date = date.fromisoformat(data["child_birth_date"])
            app.parent_id, app.country = data["parent_id"], data.get("country")
            app.region, app.district = data.get("region") or None, data.get("district") or None
            if app.submitted_category is None:
                app.category = app.submitted_category = data["category"]
            app.language, app.queue_date = data.get("language"), _dt(data["queue_date"])
            if data["category"] in self.policy.vouchers.categories and s.get(VoucherApplication, app.application_id) is None:
                s.add(VoucherApplication(application_id=app.application_id, category=data["category"],
                                         district=app.district, status="pending",
                                         submitted_at=app.queue_date or event.time))
            s.flush()
            self._detect(s, app.child_pin, app.application_id, event)
        elif t == "application.received.v1":
            app = self._applicant(s, data["application_id"], event)
            app.parent_id = app.parent_id or data.get("parent_id")
            app.parent_phone = data.get("phone") or app.parent_phone
            app.parent_email = data.get("email") or app.parent_email
        elif t == "application.returned_to_general_queue.v1":
            self._applicant(s, data["application_id"], event).category = "general"
        elif t == "application.removed.v1":
            self._applicant(s, data["application_id"], event).status = "removed"
        elif t in REFERRAL_EVENTS:
            if t == "referral.imported.v1":
                self._imported_child(s, event)
            self._referral_event(s, event)

    def _imported_child(self, s: Session, event: Event) -> None:
        """A child of the old portal never passed through registration: the
        import's fact names it. What registration said, if anything, stays."""
        data = event.data
        app = self._applicant(s, data["application_id"], event)
        app.child_pin = app.child_pin or data["child_pin"]
        if app.child_surname is None:
            app.child_surname, app.child_name = data["child_surname"], data["child_name"]
            app.child_patronymic = data.get("child_patronymic")
        app.child_birth_date = app.child_birth_date or date.fromisoformat(data["child_birth_date"])
        app.parent_id = app.parent_id or data.get("parent_id")
        app.district = app.district or data.get("district") or None
        if app.submitted_category is None:
            app.category = app.submitted_category = data["category"]
        app.language = app.language or data["language"]
        app.queue_date = app.queue_date or _dt(data["queue_date"])

    def _applicant(self, s: Session, application_id: str, event: Event) -> Applicant:
        app = s.get(Applicant, application_id, with_for_update=True)
        if app is None:
            app = Applicant(application_id=application_id, status="queued", updated_at=event.time)
            s.add(app)
        app.updated_at = event.time
        return app

    def _referral_event(self, s: Session, event: Event) -> None:
        data, t = event.data, event.type
        rid = data["referral_id"]
        ref = s.get(Referral, rid, with_for_update=True)
        if ref is None:
            ref = Referral(referral_id=rid, application_id=data["application_id"], needs_confirmation=False,
                           state="awaiting_enrolment", certificate_requests=0, updated_at=event.time)
            s.add(ref)
        ref.kindergarten_id = data.get("kindergarten_id") or ref.kindergarten_id
        ref.kindergarten_name = data.get("kindergarten_name") or ref.kindergarten_name
        deadline = _dt(data.get("deadline"))
        if t == "referral.issued.v1":
            ref.needs_confirmation = bool(data.get("needs_confirmation"))
            ref.category = data.get("category") or ref.category
            ref.issued_at = ref.issued_at or event.time
            _apply_state(ref, "awaiting_confirmation" if ref.needs_confirmation else "awaiting_enrolment",
                         deadline=deadline, at=event.time)
        elif t == "referral.imported.v1":
            # It runs on from where the old portal left it: its own state and deadline.
            ref.needs_confirmation = data["needs_confirmation"]
            ref.category = data["category"]
            ref.issued_at = ref.issued_at or _dt(data["issued_at"])
            _apply_state(ref, data["state"], deadline=deadline, at=event.time)
        elif t == "referral.certificate_requested.v1":
            _apply_state(ref, "awaiting_confirmation", deadline=deadline, at=event.time, reason=data.get("reason"))
        elif t == "referral.extended.v1":
            _apply_state(ref, ref.state, deadline=deadline, at=event.time)
        else:
            _apply_state(ref, _STATE_OF_EVENT[t], deadline=deadline, at=event.time, reason=data.get("reason"))
        if s.scalars(sa.select(ReferralEvent.seq).where(ReferralEvent.event_id == event.id)).first() is None:
            s.add(ReferralEvent(event_id=event.id, referral_id=rid, type=t.removesuffix(".v1"), at=event.time,
                                reason=(data.get("reason") or None)))
        s.flush()
        if t == "referral.certificate_requested.v1":
            ref.certificate_requests = s.scalar(sa.select(sa.func.count()).select_from(ReferralEvent).where(
                ReferralEvent.referral_id == rid, ReferralEvent.type == "referral.certificate_requested"))
        app = s.get(Applicant, ref.application_id)
        # After every fact, not only "issued": the facts of a child's
        # different referrals travel on different partitions, so the
        # cancellation that completes the pattern may arrive last.
        if app is not None and app.child_pin:
            self._detect(s, app.child_pin, app.application_id, event)

    def _detect(self, s: Session, pin: str, application_id: str, event: Event) -> None:
        rows = s.execute(
            sa.select(Referral).join(Applicant, Applicant.application_id == Referral.application_id)
            .where(Applicant.child_pin == pin)).scalars().all()
        if not rows:
            return
        history = [d.PastReferral(r.referral_id, r.application_id, _privileged(r), utc(r.issued_at) or event.time,
                                  _outcome(r.state), utc(r.closed_at)) for r in rows]
        finding = d.detect_abuse(history, self.clock(), self.policy.abuse)
        if finding is None:
            return
        if s.scalars(sa.select(AbuseCase.id).where(AbuseCase.child_pin == pin, AbuseCase.status == "open")).first():
            return
        app = s.get(Applicant, application_id)
        case_id = str(uuid.uuid4())
        s.add(AbuseCase(id=case_id, child_pin=pin, application_id=application_id,
                        district=app.district if app else None, rule=finding.rule, cycles=finding.cycles,
                        referral_ids=list(finding.referral_ids), applications=finding.applications, status="open",
                        opened_at=self.clock()))
        outbox.add(s, "verification.abuse_flagged.v1", application_id, {
            "case_id": case_id, "application_id": application_id, "rule": finding.rule, "cycles": finding.cycles,
            "referral_ids": list(finding.referral_ids), "applications": finding.applications,
            "district": app.district if app else None,
        })
        s.add(AuditEntry(at=self.clock(), actor_id=None, actor_login="system", actor_role="system",
                         actor_district="", action="abuse.flag", subject_type="abuse_case", subject_id=case_id,
                         district=(app.district if app else "") or "", outcome="ok",
                         detail={"rule": finding.rule, "cycles": finding.cycles, "event_id": event.id}))
        log.info("verification.abuse_flagged", case_id=case_id, cycles=finding.cycles)


def _privileged(ref: Referral) -> bool:
    return bool(ref.needs_confirmation) or (ref.category not in (None, "", "general"))


def _outcome(state: str) -> str | None:
    return {"paused": "expired", "resumed": "expired"}.get(state, state if state in CLOSED_STATES else None)
