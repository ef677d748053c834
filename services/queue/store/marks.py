"""What a change leaves behind for the allocator loop, in its own
transaction: a request to allocate (`allocation_requests`) and the pools
whose waiting children may have moved (`position_changes`)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.queue.models import AllocationRequest, PositionChange

REQ = AllocationRequest.__table__
MOVED = PositionChange.__table__


def request_allocation(s: Session, reason: str, now: datetime, dedupe_key: str | None = None) -> bool:
    if dedupe_key is not None:
        if s.execute(sa.select(REQ.c.id).where(REQ.c.dedupe_key == dedupe_key)).first():
            return False
    s.execute(sa.insert(REQ).values(reason=reason[:200], dedupe_key=dedupe_key, created_at=now))
    return True


def allocation_requested(s: Session) -> bool:
    return s.execute(sa.select(REQ.c.id).where(REQ.c.done_at.is_(None)).limit(1)).first() is not None


def pending_requests(s: Session) -> list[int]:
    return [r[0] for r in s.execute(sa.select(REQ.c.id).where(REQ.c.done_at.is_(None)).order_by(REQ.c.id)
                                    .limit(10_000))]


def requests_done(s: Session, ids: list[int], at: datetime, run_id: int | None = None) -> None:
    if ids:
        values = {"done_at": at} if run_id is None else {"done_at": at, "run_id": run_id}
        s.execute(sa.update(REQ).where(REQ.c.id.in_(ids)).values(**values))


def mark_pools(s: Session, pools: Iterable[tuple[int, str]] | None) -> bool:
    """False if there was nothing to mark. None: every pool."""
    rows = sorted(set(pools)) if pools is not None else [(None, None)]
    if not rows:
        return False
    if s.get_bind().dialect.name == "postgresql" and len(rows) > 100:
        cohorts, kgs = zip(*rows)
        s.execute(sa.text("INSERT INTO position_changes (cohort, kindergarten_id) "
                          "SELECT * FROM unnest(CAST(:c AS int[]), CAST(:k AS varchar[]))"),
                  {"c": list(cohorts), "k": list(kgs)})
    else:
        s.execute(sa.insert(MOVED), [{"cohort": c, "kindergarten_id": k} for c, k in rows])
    return True


def any_marked(s: Session) -> bool:
    return s.execute(sa.select(MOVED.c.id).limit(1)).first() is not None


def take_marks(s: Session) -> list[tuple[int | None, str | None]]:
    return [tuple(r) for r in s.execute(sa.delete(MOVED).returning(MOVED.c.cohort, MOVED.c.kindergarten_id))]
