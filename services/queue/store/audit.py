"""The audit trail (kezek/audit.py): every state change and every staff look
at a child's data, with the verified actor that caused it."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.audit import ACT, LOOK
from kezek.trust import Principal
from services.queue.models import audit_trail
from services.queue.store.times import aware

T = audit_trail.table


def record(s: Session, at: datetime, who: Principal, action: str, subject: str, details: dict | None = None,
           *, kind: str = ACT, reason: str | None = None) -> None:
    audit_trail.record(s, who, action, subject, details=details, kind=kind, reason=reason, at=at)


def record_many(s: Session, at: datetime, who: Principal, rows: list[dict]) -> None:
    """Rows of action, subject, details, all by one actor at one moment."""
    audit_trail.record_many(s, who, rows, at=at)


def look(s: Session, at: datetime, who: Principal, action: str, subject: str, why: str | None) -> None:
    record(s, at, who, action, subject, kind=LOOK, reason=why)


def trail(s: Session, subject: str | None, *, limit: int, after_id: int) -> list[dict]:
    q = sa.select(T).where(T.c.id > after_id).order_by(T.c.id).limit(limit)
    if subject:
        q = q.where(T.c.subject == subject)
    return [{"id": r.id, "at": aware(r.at), "kind": r.kind, "actor": r.actor, "actor_role": r.actor_role,
             "via": r.via, "action": r.action, "subject": r.subject, "outcome": r.outcome, "reason": r.reason,
             "details": r.details} for r in s.execute(q)]
