"""The published figures of a district or the whole country, counted in SQL
(no personal data leaves here: only counts and a median)."""
from __future__ import annotations

import statistics
from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.models import Application, Kindergarten, PlacePool, Publication, Referral
from services.queue.store.entries import lists_any

A, K, P, PUB, R = (Application.__table__, Kindergarten.__table__, PlacePool.__table__, Publication.__table__,
                   Referral.__table__)
WAITING = ("queued", "paused")


def kindergartens_of(s: Session, district: str | None) -> list[tuple[str, bool]]:
    """(id, open) of the district's kindergartens (every one when None)."""
    q = sa.select(K.c.id, K.c.closed_at.is_(None)).order_by(K.c.id)
    if district is not None:
        q = q.where(K.c.district == district)
    return [(k, bool(o)) for k, o in s.execute(q)]


def districts(s: Session) -> list[dict]:
    q = (sa.select(K.c.district, sa.func.count(), sa.func.count().filter(K.c.closed_at.is_(None)))
         .group_by(K.c.district).order_by(K.c.district))
    return [{"district": d, "kindergartens": n, "open": o} for d, n, o in s.execute(q)]


def _waiting_where(s: Session, kgs: Collection[str] | None):
    cond = A.c.status.in_(WAITING)
    return cond if kgs is None else sa.and_(cond, lists_any(s, kgs))


def waiting(s: Session, kgs: Collection[str] | None) -> list[dict]:
    """Waiting children (queued or on the stop-list) by cohort and language;
    of a district: those who list one of its kindergartens."""
    q = (sa.select(A.c.cohort, A.c.language, sa.func.count()).where(_waiting_where(s, kgs))
         .group_by(A.c.cohort, A.c.language).order_by(A.c.cohort, A.c.language))
    return [{"cohort": c, "language": lang, "children": n} for c, lang, n in s.execute(q)]


def median_days_waiting(s: Session, kgs: Collection[str] | None, now: datetime) -> float | None:
    where = _waiting_where(s, kgs)
    if s.get_bind().dialect.name == "postgresql":
        days = sa.func.extract("epoch", sa.literal(now) - A.c.queue_date) / 86400.0
        value = s.execute(sa.select(sa.func.percentile_cont(0.5).within_group(days)).where(where)).scalar()
        return None if value is None else round(float(value), 1)
    dates = [d if d.tzinfo else d.replace(tzinfo=now.tzinfo) for d in s.scalars(sa.select(A.c.queue_date).where(where))]
    if not dates:
        return None
    return round(statistics.median((now - d).total_seconds() / 86400 for d in dates), 1)


def places(s: Session, kgs: Collection[str] | None) -> dict[str, int]:
    """Free, held and taken places of the register now."""
    q = sa.select(sa.func.coalesce(sa.func.sum(P.c.free), 0), sa.func.coalesce(sa.func.sum(P.c.held), 0),
                  sa.func.coalesce(sa.func.sum(P.c.enrolled), 0))
    if kgs is not None:
        q = q.where(P.c.kindergarten_id.in_(list(kgs)))
    free, held, taken = s.execute(q).one()
    return {"free": int(free), "held": int(held), "taken": int(taken)}


def published(s: Session, kgs: Collection[str] | None, start: datetime, end: datetime) -> dict[str, int]:
    """Places published and withdrawn in [start, end)."""
    q = (sa.select(sa.func.coalesce(sa.func.sum(PUB.c.count).filter(PUB.c.count > 0), 0),
                   sa.func.coalesce(-sa.func.sum(PUB.c.count).filter(PUB.c.count < 0), 0))
         .where(PUB.c.published_at >= start, PUB.c.published_at < end))
    if kgs is not None:
        q = q.where(PUB.c.kindergarten_id.in_(list(kgs)))
    pub, withdrawn = s.execute(q).one()
    return {"published": int(pub), "withdrawn": int(withdrawn)}


def referrals(s: Session, kgs: Collection[str] | None, start: datetime, end: datetime) -> dict[str, int]:
    """Referrals issued in [start, end), and those that ended then by outcome."""
    scope = [] if kgs is None else [R.c.kindergarten_id.in_(list(kgs))]
    issued = s.execute(sa.select(sa.func.count()).where(R.c.issued_at >= start, R.c.issued_at < end,
                                                        R.c.external_id.is_(None), *scope)).scalar_one()
    ended = dict(s.execute(sa.select(R.c.outcome, sa.func.count())
                           .where(R.c.ended_at >= start, R.c.ended_at < end, R.c.outcome.is_not(None), *scope)
                           .group_by(R.c.outcome)).all())
    left = s.execute(sa.select(sa.func.count()).select_from(R.join(A, A.c.id == R.c.application_id))
                     .where(R.c.outcome == "left", A.c.left_at >= start, A.c.left_at < end, *scope)).scalar_one()
    # A referral that led to an enrolment and whose child has since left
    # was enrolled all the same.
    enrolled = ended.get("enrolled", 0) + ended.get("left", 0)
    return {"issued": int(issued), "enrolled": int(enrolled), "expired": int(ended.get("expired", 0)),
            "cancelled": int(ended.get("cancelled", 0)), "rejected": int(ended.get("privilege_rejected", 0)),
            "left": int(left)}


def waiting_total(s: Session, kgs: Collection[str] | None) -> int:
    """Each waiting child once (by cohort and language a child who lists
    two kindergartens of the district is still one child)."""
    return int(s.execute(sa.select(sa.func.count()).where(_waiting_where(s, kgs))).scalar_one())
