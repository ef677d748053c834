"""The audit trail: every state change, with who or what caused it."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.models import AuditEntry
from services.queue.store.times import aware

AUDIT = AuditEntry.__table__


def record(s: Session, at: datetime, actor: str, action: str, subject: str, details: dict | None = None) -> None:
    s.execute(sa.insert(AUDIT).values(at=at, actor=actor, action=action, subject=subject, details=details or {}))


def record_many(s: Session, rows: list[dict]) -> None:
    """Rows of at, actor, action, subject, details."""
    if rows:
        s.execute(sa.insert(AUDIT), rows)


def trail(s: Session, subject: str | None, *, limit: int, after_id: int) -> list[dict]:
    q = sa.select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id).limit(limit)
    if subject:
        q = q.where(AuditEntry.subject == subject)
    return [{"id": e.id, "at": aware(e.at), "actor": e.actor,
             "action": e.action, "subject": e.subject, "details": e.details} for e in s.scalars(q)]
