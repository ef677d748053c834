"""What the queue holds about a family's application, for the family's own
copy (DOMAIN.md section 7), and the family's request to erase it
(domain/erasure.py decides; a granted erasure anonymises the queue's data at
once through the retention path and tells every other service,
application.erasure_granted.v1)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from kezek.audit import ACT
from kezek.retention import ERASURE_GRANTED, RetentionPolicy
from services.queue.domain.erasure import erasure_refusal
from services.queue.domain.refusals import NotFound
from services.queue.models import Application, PublishedPosition, Referral, audit_trail, retention_clock
from services.queue.retention import retention_job
from services.queue.store import runs
from services.queue.store.times import aware
from services.queue.usecases.views import Views
from services.queue.usecases.work import Actor, Context

ENTRY_FIELDS = ("id", "pin", "surname", "name", "patronymic", "birth_date", "cohort", "category",
                "claimed_category", "queue_date", "language", "preferences", "locale", "status", "paused_until",
                "created_at", "removed_at", "removal_reason", "left_at")
REFERRAL_FIELDS = ("id", "kindergarten_id", "cohort", "language", "category", "needs_confirmation", "status",
                   "state", "outcome", "issued_at", "deadline", "ended_at", "extended", "confirmed_at")


def _plain(value):
    if isinstance(value, datetime):
        return aware(value).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _who(actor: str, role: str) -> str:
    """An actor as the family reads it: itself, a role of staff (their
    identity is not the family's data), or the service or clock."""
    if role == "parent":
        return actor
    if role == "service":
        return actor
    return f"staff ({role})"


class Family:
    def __init__(self, ctx: Context, retention: RetentionPolicy | None = None):
        self.ctx = ctx
        self.retention = retention or RetentionPolicy()

    def owner(self, app_id: str) -> str | None:
        """The parent the application belongs to (its entry's, or for one the
        queue refused, its closing's)."""
        with self.ctx.read() as w:
            entry = w.s.get(Application, app_id)
            if entry is not None:
                return entry.parent_id
            row = retention_clock.get(w.s, app_id)
            return row["parent_id"] if row else None

    def copy(self, app_id: str) -> dict:
        """Everything the queue holds about the application."""
        with self.ctx.read() as w:
            s = w.s
            entry = s.get(Application, app_id)
            clock = retention_clock.get(s, app_id)
            if entry is None and clock is None:
                raise NotFound("entry_unknown", field="application_id", application_id=app_id)
            refs = s.scalars(sa.select(Referral).where(Referral.application_id == app_id).order_by(Referral.id))
            published = s.get(PublishedPosition, app_id)
            t = audit_trail.table
            history = s.execute(sa.select(t).where(t.c.subject == f"application:{app_id}", t.c.kind == ACT)
                                .order_by(t.c.id)).mappings().all()
            out = {
                "entry": {f: _plain(getattr(entry, f)) for f in ENTRY_FIELDS} if entry else None,
                "referrals": [{f: _plain(getattr(r, f)) for f in REFERRAL_FIELDS} for r in refs],
                "published_position": {"kindergarten_id": published.kindergarten_id, "position": published.position,
                                       "at": _plain(published.changed_at)} if published else None,
                "allocations": runs.records_of(s, app_id),
                "history": [{"at": _plain(h["at"]), "action": h["action"], "by": _who(h["actor"], h["actor_role"]),
                             "outcome": h["outcome"], "details": h["details"]} for h in history],
                "retention": self._retention(clock),
            }
        out["positions"] = [{"kindergarten": p.kindergarten, "position": p.position, "explanation": p.text()}
                            for p in self._positions(app_id, out["entry"])]
        return out

    def _positions(self, app_id: str, entry: dict | None):
        if not entry or entry["status"] != "queued":
            return []
        return Views(self.ctx).positions(app_id)

    def _retention(self, clock: dict | None) -> dict | None:
        if clock is None:
            return None
        closed = aware(clock["closed_at"])
        return {"outcome": clock["outcome"], "closed_at": closed.isoformat(),
                "kept_until": self.retention.due_at(clock["outcome"], closed).isoformat(),
                "anonymised_at": _plain(clock["anonymised_at"]),
                "erasure_requested_at": _plain(clock["erasure_requested_at"])}

    def erase(self, app_id: str, *, actor: Actor) -> dict:
        """The family's request: refused with the legal reason (recorded), or
        granted: the queue's data anonymised now, every other service told."""
        now = self.ctx.now()
        with self.ctx.read() as w:
            entry = w.s.get(Application, app_id)
            clock = retention_clock.get(w.s, app_id)
        if entry is None and clock is None:
            raise NotFound("entry_unknown", field="application_id", application_id=app_id)
        if clock is not None and clock["anonymised_at"] is not None:
            return {"application_id": app_id, "erased": True, "anonymised_at": _plain(clock["anonymised_at"])}
        outcome = clock["outcome"] if clock else None
        closed_at = aware(clock["closed_at"]) if clock else None
        keep_until = self.retention.due_at(outcome, closed_at) if clock else None
        why = erasure_refusal(entry.status if entry else None, outcome, keep_until, now)
        subject = f"application:{app_id}"
        if why is not None:
            with self.ctx.uow() as w:
                w.audit(actor, "application.erasure_refused", subject, {"code": why.code, "status":
                        entry.status if entry else None, "outcome": outcome})
            raise why
        parent_id = (entry.parent_id if entry else None) or clock["parent_id"]
        job = retention_job(self.ctx.sessions, self.retention, now=self.ctx.now)
        with self.ctx.uow() as w:
            w.audit(actor, "application.erasure_granted", subject, {"outcome": outcome})
            w.emit(ERASURE_GRANTED, subject, {"application_id": app_id, "parent_id": parent_id, "outcome": outcome,
                                              "closed_at": closed_at.isoformat(), "granted_at": now.isoformat()},
                   time=now)
            job.erase(w.s, app_id, parent_id, outcome, closed_at)
        return {"application_id": app_id, "erased": True, "anonymised_at": now.isoformat()}

