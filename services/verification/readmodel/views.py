"""Queries of the read model the pages show: the worklist's waiting
referrals, a child's referrals across applications, open abuse flags, the
latest certificate of a referral, and the views of a certificate and of a
deadline in the service's local time. Reading only; the use cases check who
may see them and audit the look."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.calendar import WorkingCalendar
from kezek.sealing import ring_of
from services.verification import domain as d
from services.verification.models import AbuseCase, Applicant, Certificate, Referral, utc
from workflows import rules


def pin_hashes(s: Session, pins: Iterable[str]) -> list[str]:
    """What a search for these PINs compares `child_pin_hash` with: their
    hashes under every key (rows not yet moved to the current key match too)."""
    ring = ring_of(s)
    return [h for p in set(pins) if p for h in ring.lookups("pin", p)]


def full_name(a: Applicant | None) -> str:
    if a is None:
        return ""
    return " ".join(p for p in (a.child_surname, a.child_name, a.child_patronymic) if p)


def contacts(a: Applicant | None) -> dict:
    """The child's and parent's details every case-like page shows."""
    return {"child": full_name(a), "child_pin": a.child_pin if a else None,
            "birth_date": a.child_birth_date if a else None,
            "parent_phone": a.parent_phone if a else None,
            "parent_email": a.parent_email if a else None,
            "district": a.district if a else None}


class Views:
    def __init__(self, cal: WorkingCalendar, policy: d.VerificationPolicy):
        self.cal = cal
        self.policy = policy

    def local(self, moment: datetime | None) -> datetime | None:
        return self.cal.local(utc(moment)) if moment else None

    def waiting(self, s: Session, district: str | None, *, scoped: bool) -> list[tuple[Referral, Applicant | None]]:
        """Referrals waiting for privilege confirmation, the nearest deadline
        first; in one district, or everywhere when unscoped with no district."""
        q = (sa.select(Referral, Applicant)
             .outerjoin(Applicant, Applicant.application_id == Referral.application_id)
             .where(Referral.state == d.OPEN_STATE))
        if scoped or district:
            # Never unfiltered for a district role, even with no district.
            q = q.where(Applicant.district == (district or ""))
        q = q.order_by(Referral.deadline.is_(None), Referral.deadline, Referral.referral_id)
        return [(ref, app) for ref, app in s.execute(q).all()]

    def worklist_items(self, s: Session, rows: list[tuple[Referral, Applicant | None]], today: date) -> list[dict]:
        pins = [a.child_pin for _, a in rows if a is not None and a.child_pin]
        history = self.history(s, pins)
        abuse = self.open_abuse(s, pins)
        certs = self.latest_certificates(s, [r.referral_id for r, _ in rows])
        items = []
        for ref, app in rows:
            pin = app.child_pin if app else None
            items.append({
                "referral_id": ref.referral_id, "application_id": ref.application_id,
                "category": ref.category or "", **contacts(app),
                "kindergarten": ref.kindergarten_name or ref.kindergarten_id or "",
                "certificate_requests": ref.certificate_requests,
                "certificate": self.certificate_view(certs.get(ref.referral_id), today),
                "earlier": [h for h in history.get(pin, []) if h["referral_id"] != ref.referral_id],
                "abuse_case": abuse.get(pin) if pin else None,
                **self.deadline_view(ref.deadline, today),
            })
        return items

    def history(self, s: Session, pins: Iterable[str]) -> dict[str, list[dict]]:
        """Every referral of each child (by PIN, across applications), oldest first."""
        pins = [p for p in set(pins) if p]
        if not pins:
            return {}
        rows = s.execute(
            sa.select(Referral, Applicant.child_pin)
            .join(Applicant, Applicant.application_id == Referral.application_id)
            .where(Applicant.child_pin_hash.in_(pin_hashes(s, pins)))
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

    @staticmethod
    def open_abuse(s: Session, pins: Iterable[str]) -> dict[str, str]:
        pins = [p for p in set(pins) if p]
        if not pins:
            return {}
        return dict(s.execute(sa.select(AbuseCase.child_pin, AbuseCase.id)
                              .where(AbuseCase.child_pin_hash.in_(pin_hashes(s, pins)),
                                     AbuseCase.status == "open")).all())

    @staticmethod
    def latest_certificates(s: Session, referral_ids: Iterable[str]) -> dict[str, Certificate]:
        ids = list(referral_ids)
        if not ids:
            return {}
        out: dict[str, Certificate] = {}
        for cert in s.scalars(sa.select(Certificate).where(Certificate.referral_id.in_(ids))
                              .order_by(Certificate.recorded_at)):
            out[cert.referral_id] = cert   # the last one recorded wins
        return out

    @staticmethod
    def live_privileged_referral(s: Session, pin: str) -> Referral | None:
        return s.scalars(
            sa.select(Referral).join(Applicant, Applicant.application_id == Referral.application_id)
            .where(Applicant.child_pin_hash.in_(pin_hashes(s, [pin])), Referral.state == d.OPEN_STATE)
            .order_by(Referral.issued_at.desc())).first()

    def certificate_view(self, cert: Certificate | None, today: date) -> dict | None:
        if cert is None:
            return None
        valid_days = self.policy.certificate_valid_days
        return {
            "id": cert.id, "organisation": cert.organisation, "number": cert.number,
            "issued_on": cert.issued_on, "valid_until": d.certificate_valid_until(cert.issued_on, valid_days),
            "in_date": d.certificate_in_date(cert.issued_on, today, valid_days),
            "sha256": cert.scan_sha256, "scan_name": cert.scan_name, "recorded_at": self.local(cert.recorded_at),
        }

    def deadline_view(self, deadline: datetime | None, today: date) -> dict:
        local = self.local(deadline)
        if local is None:
            return {"deadline": None, "last_day": None, "days_left": None, "working_days_left": None}
        return {"deadline": local, "last_day": rules.last_day(local), "days_left": rules.days_left(local, today),
                "working_days_left": rules.working_days_left(self.cal, local, today)}
