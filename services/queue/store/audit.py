"""The audit trail (kezek/audit.py): every state change and every staff look
at a child's data, with the verified actor that caused it."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.audit import ACT, LOOK
from kezek.trust import Principal
from services.queue.models import Application, audit_trail
from services.queue.store.times import aware

T = audit_trail.table


def record(s: Session, at: datetime, who: Principal, action: str, subject: str, details: dict | None = None,
           *, kind: str = ACT, reason: str | None = None) -> None:
    audit_trail.record(s, who, action, subject, details=details, kind=kind, reason=reason, at=at)


def record_many(s: Session, at: datetime, who: Principal, rows: list[dict]) -> None:
    """Rows of action, subject, details, all by one actor at one moment."""
    audit_trail.record_many(s, who, rows, at=at)


def look(s: Session, at: datetime, who: Principal, action: str, subject: str, why: str | None) -> None:
    record(s, at, who, action, subject, _office(who), kind=LOOK, reason=why)


def looks(s: Session, at: datetime, who: Principal, action: str, subjects: list[str], why: str | None) -> None:
    record_many(s, at, who, [{"action": action, "subject": subject, "kind": LOOK, "reason": why,
                              "details": _office(who)} for subject in subjects])


def _office(who: Principal) -> dict:
    """Where the member of staff works: what the family is told instead of a name."""
    office = who.kindergarten or who.district
    return {"office": office} if office else {}


def family_looks(s: Session, parent_id: str, limit: int = 500) -> list[dict]:
    ids = [f"application:{i}" for i in s.scalars(sa.select(Application.id).where(Application.parent_id == parent_id))]
    if not ids:
        return []
    rows = s.execute(sa.select(T.c.at, T.c.actor_role, T.c.district, T.c.action, T.c.subject, T.c.details)
                     .where(T.c.kind == LOOK, T.c.subject.in_(ids), T.c.outcome == "ok")
                     .order_by(T.c.id.desc()).limit(limit))
    return [{"at": aware(r.at).isoformat(), "role": r.actor_role,
             "office": (r.details or {}).get("office") or r.district or "",
             "what": r.action, "application_id": r.subject.partition(":")[2], "service": "queue"} for r in rows]


def trail(s: Session, subject: str | None, *, limit: int, after_id: int) -> list[dict]:
    q = sa.select(T).where(T.c.id > after_id).order_by(T.c.id).limit(limit)
    if subject:
        q = q.where(T.c.subject == subject)
    return [{"id": r.id, "at": aware(r.at), "kind": r.kind, "actor": r.actor, "actor_role": r.actor_role,
             "via": r.via, "action": r.action, "subject": r.subject, "outcome": r.outcome, "reason": r.reason,
             "details": r.details} for r in s.execute(q)]
