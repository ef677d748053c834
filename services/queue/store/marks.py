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


Pools = Iterable[tuple[str, int, str]]  # (kindergarten, cohort, language) groups of places
MAX_POOLS = 2_000  # a request naming more asks for every pool (a large import)


def request_allocation(s: Session, reason: str, now: datetime, dedupe_key: str | None = None,
                       pools: Pools | None = None) -> bool:
    """`pools`: the only groups of places the change may have made takeable
    (None: every pool)."""
    if dedupe_key is not None:
        if s.execute(sa.select(REQ.c.id).where(REQ.c.dedupe_key == dedupe_key)).first():
            return False
    named = None if pools is None else sorted({(k, int(c), lang) for k, c, lang in pools})
    if named is not None and len(named) > MAX_POOLS:
        named = None
    s.execute(sa.insert(REQ).values(reason=reason[:200], dedupe_key=dedupe_key, created_at=now,
                                    pools=None if named is None else [list(p) for p in named]))
    return True


def allocation_requested(s: Session) -> bool:
    return s.execute(sa.select(REQ.c.id).where(REQ.c.done_at.is_(None)).limit(1)).first() is not None


def pending_requests(s: Session) -> tuple[list[int], set[tuple[str, int, str]] | None]:
    """The pending requests' ids, and the pools they name (None: one asks
    for every pool)."""
    ids, pools = [], set()
    for rid, named in s.execute(sa.select(REQ.c.id, REQ.c.pools).where(REQ.c.done_at.is_(None))
                                .order_by(REQ.c.id).limit(10_000)):
        ids.append(rid)
        if named is None:
            pools = None
        elif pools is not None:
            pools.update((k, c, lang) for k, c, lang in named)
    return ids, pools


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


def marked_pools(s: Session) -> int | None:
    """How many pools are marked (None: every pool is)."""
    every, n = s.execute(sa.select(sa.func.count().filter(MOVED.c.cohort.is_(None)),
                                   sa.func.count(sa.distinct(sa.tuple_(MOVED.c.cohort, MOVED.c.kindergarten_id))))
                         ).one()
    return None if every else n


def take_marks(s: Session, share: tuple[int, int] | None = None) -> list[tuple[int | None, str | None]]:
    """The marks taken (deleted in the caller's transaction); `share` (i, n):
    only those of the pools in share i of n (PostgreSQL), a disjoint split
    of the marked pools by their kindergarten, leaving the mark of every
    pool for a later publication."""
    q = sa.delete(MOVED)
    if share is not None:
        i, n = share
        q = q.where(MOVED.c.cohort.is_not(None),
                    sa.func.mod(sa.func.hashtext(MOVED.c.kindergarten_id).op("&")(0x7FFFFFFF), n) == i)
    return [tuple(r) for r in s.execute(q.returning(MOVED.c.cohort, MOVED.c.kindergarten_id))]
