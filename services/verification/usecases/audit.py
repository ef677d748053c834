"""The audit trail's search (supervisors of their district, administrators
and operators of every district). The search is itself audited."""
from __future__ import annotations

from datetime import UTC, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.verification import domain as d
from services.verification.models import Staff, audit_trail, utc
from services.verification.usecases.context import Context, StaffView

# The kinds of subject an entry names (`<kind>:<id>`); a search by id finds any.
SUBJECT_KINDS = ("referral", "abuse_case", "voucher", "district", "staff", "login", "page")


def _staff_actor():
    return sa.literal("staff:") + Staff.id


class AuditSearch:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def search(self, actor: StaffView, query: d.AuditQuery) -> list[dict]:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            ctx.require(actor, d.Permission.AUDIT_SEARCH, "audit.search")
            rows = s.execute(self._query(s, actor, query)).mappings().all()
            logins = dict(s.execute(sa.select(_staff_actor(), Staff.login)).all())
            out = [{"seq": r["id"], "at": ctx.local(utc(r["at"])), "actor": logins.get(r["actor"], r["actor"]),
                    "role": r["actor_role"], "action": r["action"], "kind": r["kind"],
                    "subject_type": r["subject"].partition(":")[0] if ":" in r["subject"] else "",
                    "subject_id": r["subject"].partition(":")[2] if ":" in r["subject"] else r["subject"],
                    "district": r["district"] or "", "outcome": r["outcome"], "detail": r["details"] or {}}
                   for r in rows]
            ctx.audit(s, actor, "audit.search", district=actor.district, actor_filter=query.actor or None,
                      action_filter=query.action or None, subject_filter=query.subject or None)
        return out

    def _query(self, s: Session, actor: StaffView, query: d.AuditQuery) -> sa.Select:
        t = audit_trail.table
        q = sa.select(t)
        if not d.all_districts(actor.role):
            # A supervisor sees what happened in the district and what the
            # district's staff did.
            district_staff = sa.select(_staff_actor()).where(Staff.district == actor.district)
            q = q.where(sa.or_(t.c.district == actor.district, t.c.actor.in_(district_staff)))
        if query.actor:
            found = s.scalar(sa.select(Staff.id).where(Staff.login == query.actor.lower()))
            q = q.where(t.c.actor == (f"staff:{found}" if found else query.actor))
        if query.action:
            q = q.where(t.c.action.startswith(query.action, autoescape=True))
        if query.subject:
            q = q.where(t.c.subject.in_([query.subject, *(f"{k}:{query.subject}" for k in SUBJECT_KINDS)]))
        cal = self.ctx.cal
        if query.date_from:
            q = q.where(t.c.at >= cal.start_of_day(query.date_from).astimezone(UTC))
        if query.date_to:
            q = q.where(t.c.at < cal.start_of_day(query.date_to + timedelta(days=1)).astimezone(UTC))
        return q.order_by(t.c.id.desc()).limit(query.limit)
