"""The audit trail's search (supervisors of their district, administrators
of every district). The search is itself audited."""
from __future__ import annotations

from datetime import UTC, timedelta

import sqlalchemy as sa

from services.verification import domain as d
from services.verification.models import AuditEntry
from services.verification.usecases.context import Context, StaffView


class AuditTrail:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def search(self, actor: StaffView, query: d.AuditQuery) -> list[dict]:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            ctx.require(actor, d.Permission.AUDIT_SEARCH, "audit.search")
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
                q = q.where(AuditEntry.at >= ctx.cal.start_of_day(query.date_from).astimezone(UTC))
            if query.date_to:
                q = q.where(AuditEntry.at < ctx.cal.start_of_day(query.date_to + timedelta(days=1)).astimezone(UTC))
            rows = list(s.scalars(q.order_by(AuditEntry.seq.desc()).limit(query.limit)))
            out = [{"seq": r.seq, "at": ctx.local(r.at), "actor": r.actor_login, "role": r.actor_role,
                    "action": r.action, "subject_type": r.subject_type, "subject_id": r.subject_id,
                    "district": r.district, "outcome": r.outcome, "detail": r.detail} for r in rows]
            ctx.audit(s, actor, "audit.search", district=actor.district, actor_filter=query.actor or None,
                      action_filter=query.action or None, subject_filter=query.subject or None)
        return out
