"""What a kindergarten's staff read: the referrals to it (with the child, for
the enrolment) and the children enrolled in it or who left it."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.models import Application, Referral
from services.queue.store.times import aware

A, R = Application.__table__, Referral.__table__

_COLUMNS = (R.c.id, R.c.application_id, R.c.kindergarten_id, R.c.cohort, R.c.language, R.c.for_category,
            R.c.category, R.c.needs_confirmation, R.c.status, R.c.state, R.c.outcome, R.c.issued_at, R.c.deadline,
            R.c.ended_at, A.c.surname, A.c.name, A.c.patronymic, A.c.pin, A.c.birth_date, A.c.parent_id,
            A.c.status.label("entry_status"), A.c.left_at)


def _view(r) -> dict:
    return {"id": r.id, "application_id": r.application_id, "kindergarten": r.kindergarten_id,
            "cohort": r.cohort, "language": r.language, "for_category": r.for_category or None,
            "category": r.category, "needs_confirmation": r.needs_confirmation, "status": r.status,
            "state": r.state, "outcome": r.outcome, "issued_at": aware(r.issued_at), "deadline": aware(r.deadline),
            "ended_at": aware(r.ended_at), "left_at": aware(r.left_at), "entry_status": r.entry_status,
            "child": " ".join(p for p in (r.surname, r.name, r.patronymic) if p), "pin": r.pin,
            "birth_date": r.birth_date, "parent_id": r.parent_id}


def referrals_to(s: Session, kg: str, *, live: bool, since: datetime | None = None, limit: int = 500) -> list[dict]:
    """Live referrals to `kg`, the nearest deadline first; or those that
    ended (enrolled, cancelled, expired, rejected) since `since`, the latest first."""
    q = sa.select(*_COLUMNS).join(A, A.c.id == R.c.application_id).where(R.c.kindergarten_id == kg)
    if live:
        q = q.where(R.c.status == "live").order_by(R.c.deadline, R.c.id)
    else:
        q = q.where(R.c.status != "live").order_by(R.c.ended_at.desc(), R.c.id.desc())
        if since is not None:
            q = q.where(R.c.ended_at >= since)
    return [_view(r) for r in s.execute(q.limit(limit))]


def referral_to(s: Session, kg: str, referral_id: int) -> dict | None:
    r = s.execute(sa.select(*_COLUMNS).join(A, A.c.id == R.c.application_id)
                  .where(R.c.kindergarten_id == kg, R.c.id == referral_id)).first()
    return _view(r) if r else None


def children_of(s: Session, kg: str, *, left_since: datetime | None, limit: int = 2000) -> list[dict]:
    """The children enrolled in `kg` (by the enrolment, oldest first), then
    those who left it since `left_since` (the latest first)."""
    base = sa.select(*_COLUMNS).join(A, A.c.id == R.c.application_id).where(R.c.kindergarten_id == kg)
    enrolled = s.execute(base.where(R.c.status == "enrolled").order_by(R.c.cohort, R.c.ended_at).limit(limit))
    out = [_view(r) for r in enrolled]
    if left_since is not None:
        left = s.execute(base.where(R.c.outcome == "left", A.c.left_at >= left_since)
                         .order_by(A.c.left_at.desc()).limit(limit))
        out += [_view(r) for r in left]
    return out
