"""A child's data and who looked at it (DOMAIN.md section 7).

- The search by PIN (caseworkers, supervisors, administrators): the member
  of staff says why first (kezek/looks.py); the child's applications in the
  caller's district are shown, each look recorded with that reason, and a
  search that finds nothing there is recorded too (without the PIN).
- Who looked at a child (supervisors of its district, administrators): every
  look this service recorded at any of the child's applications, referrals,
  abuse cases and voucher applications (the child is every application with
  the same PIN), and the queue's looks at its entries, with the member of
  staff, the office and why. Opening that list is itself a look.
- What a family is told (the gateway asks, acting for the parent): which
  offices looked at its children's data, when and in what role; no names
  of staff.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.audit import LOOK
from kezek.looks import reason_parts
from services.verification import domain as d
from services.verification.looking import validate_child_search
from services.verification.models import (AbuseCase, Applicant, Referral, Staff, audit_trail,
                                          utc)
from services.verification.readmodel.views import full_name, pin_hashes
from services.verification.usecases.context import Context, NotFound, StaffView
from services.verification.usecases.desk import Desk, QueueUnavailable, asking_the_queue

LIMIT = 500


@dataclass(frozen=True)
class Child:
    """The applications of one child (one PIN) and what names them in the audit trail."""

    applicants: list[Applicant]
    referrals: list[Referral]
    abuse_cases: list[str]

    @property
    def subjects(self) -> list[str]:
        ids = [a.application_id for a in self.applicants]
        return ([f"application:{i}" for i in ids] + [f"voucher:{i}" for i in ids]
                + [f"referral:{r.referral_id}" for r in self.referrals]
                + [f"abuse_case:{c}" for c in self.abuse_cases])


def same_child(s: Session, applicant: Applicant) -> Child:
    if applicant.child_pin:
        hashes = pin_hashes(s, [applicant.child_pin])
        apps = list(s.scalars(sa.select(Applicant).where(Applicant.child_pin_hash.in_(hashes))
                              .order_by(Applicant.queue_date)))
        cases = list(s.scalars(sa.select(AbuseCase.id).where(AbuseCase.child_pin_hash.in_(hashes))))
    else:
        apps, cases = [applicant], []
    ids = [a.application_id for a in apps]
    refs = list(s.scalars(sa.select(Referral).where(Referral.application_id.in_(ids))
                          .order_by(Referral.issued_at)))
    return Child(apps, refs, cases)


class Children(Desk):
    def __init__(self, ctx: Context, queue=None):
        super().__init__(ctx, queue)

    # ------------------------------------------------------------ the search by PIN

    def search(self, actor: StaffView, pin: str, purpose: str, note: str) -> dict:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            ctx.require(actor, d.Permission.CHILD_SEARCH, "child.search")
            search = validate_child_search(pin, purpose, note, ctx.policy.country)
            found = list(s.scalars(sa.select(Applicant).where(
                Applicant.child_pin_hash.in_(pin_hashes(s, [search.pin]))).order_by(Applicant.queue_date)))
            shown = [a for a in found if d.sees_district(actor.role, actor.district, a.district)]
            refs = {a.application_id: [] for a in shown}
            for r in s.scalars(sa.select(Referral).where(Referral.application_id.in_(list(refs)))
                               .order_by(Referral.issued_at)):
                refs[r.application_id].append(r)
            for a in shown:
                ctx.audit(s, actor, "child.search", subject_type="application", subject_id=a.application_id,
                          district=a.district, why=search.reason)
            if not shown:
                ctx.audit(s, actor, "child.search", subject_type="search", subject_id="-",
                          district=actor.district or None, why=search.reason, found=0)
            return {"purpose": search.purpose, "note": search.note, "found": [{
                "application_id": a.application_id, "child": full_name(a), "child_pin": a.child_pin,
                "birth_date": a.child_birth_date, "district": a.district, "category": a.category,
                "status": a.status, "queue_date": ctx.local(a.queue_date),
                "referrals": [{"referral_id": r.referral_id, "state": r.state,
                               "kindergarten": r.kindergarten_name or r.kindergarten_id or "",
                               "issued_at": ctx.local(r.issued_at)} for r in refs[a.application_id]],
            } for a in shown]}

    # ------------------------------------------------------------ who looked at a child

    async def looks(self, actor: StaffView, application_id: str) -> dict:
        own = await asyncio.to_thread(self._own_looks, actor, application_id)
        queue: list[dict] | None = []
        try:
            for app_id in own["application_ids"]:
                async with asking_the_queue():
                    rows = await self.queue.entry_looks(actor.principal, app_id)
                queue += [self._queue_look(r, own["names"]) for r in rows]
        except (QueueUnavailable, NotFound):
            queue = None          # said on the page: the queue's part could not be read
        looks = own["looks"] + (queue or [])
        looks.sort(key=lambda x: x["at"] or utc_min(), reverse=True)
        return {**own["view"], "looks": looks[:LIMIT], "queue_answered": queue is not None}

    def _own_looks(self, actor: StaffView, application_id: str) -> dict:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            ctx.require(actor, d.Permission.LOOKS_VIEW, "child.looks", "application", application_id)
            applicant = s.get(Applicant, application_id)
            if applicant is None:
                raise ctx.missing("child.looks", "application", application_id)
            ctx.in_district(actor, applicant.district, "child.looks", "application", application_id)
            child = same_child(s, applicant)
            t = audit_trail.table
            rows = s.execute(sa.select(t).where(t.c.kind == LOOK, t.c.subject.in_(child.subjects))
                             .order_by(t.c.id.desc()).limit(LIMIT)).mappings().all()
            names = {f"staff:{i}": (login, name) for i, login, name in
                     s.execute(sa.select(Staff.id, Staff.login, Staff.full_name))}
            looks = [self._look(r, names, "verification") for r in rows]
            ctx.audit(s, actor, "child.looks", subject_type="application", subject_id=application_id,
                      district=applicant.district)
            view = {"application_id": application_id, "child": full_name(applicant),
                    "child_pin": applicant.child_pin, "birth_date": applicant.child_birth_date,
                    "district": applicant.district}
            return {"view": view, "looks": looks, "names": names,
                    "application_ids": [a.application_id for a in child.applicants]}

    def _look(self, r, names: dict, service: str) -> dict:
        login, name = names.get(r["actor"], (r["actor"], ""))
        code, note = reason_parts(r["reason"])
        subject_type, _, subject_id = str(r["subject"]).partition(":")
        return {"at": self.ctx.local(utc(r["at"])), "login": login, "name": name, "role": r["actor_role"],
                "office": r["district"] or "", "action": r["action"], "reason": code, "note": note,
                "subject_type": subject_type, "subject_id": subject_id, "service": service}

    def _queue_look(self, r: dict, names: dict) -> dict:
        from datetime import datetime

        at = r.get("at")
        row = {**r, "at": datetime.fromisoformat(at) if isinstance(at, str) else at,
               "district": (r.get("details") or {}).get("office") or r.get("district")}
        return self._look(row, names, "queue")


    def family_looks(self, parent_id: str) -> list[dict]:
        return family_looks(self.ctx, parent_id)


def family_looks(ctx: Context, parent_id: str) -> list[dict]:
    """The looks of staff at a family's applications (and their referrals,
    abuse cases and voucher applications), newest first: when, the role and
    the office (district), what; never the member of staff."""
    with ctx.sessions() as s:
        ids = list(s.scalars(sa.select(Applicant.application_id).where(Applicant.parent_id == parent_id)))
        if not ids:
            return []
        refs = list(s.scalars(sa.select(Referral.referral_id).where(Referral.application_id.in_(ids))))
        cases = list(s.scalars(sa.select(AbuseCase.id).where(AbuseCase.application_id.in_(ids))))
        subjects = ([f"application:{i}" for i in ids] + [f"voucher:{i}" for i in ids]
                    + [f"referral:{r}" for r in refs] + [f"abuse_case:{c}" for c in cases])
        t = audit_trail.table
        rows = s.execute(sa.select(t.c.at, t.c.actor_role, t.c.district, t.c.action, t.c.subject)
                         .where(t.c.kind == LOOK, t.c.subject.in_(subjects), t.c.outcome == "ok")
                         .order_by(t.c.id.desc()).limit(LIMIT)).all()
        return [{"at": utc(r.at).isoformat(), "role": r.actor_role, "office": r.district or "",
                 "what": r.action, "application_id": _application_of(r.subject, ids), "service": "verification"}
                for r in rows]


def _application_of(subject: str, ids: list[str]) -> str | None:
    kind, _, value = subject.partition(":")
    return value if kind in ("application", "voucher") and value in ids else None


def utc_min():
    from datetime import UTC, datetime

    return datetime.min.replace(tzinfo=UTC)
