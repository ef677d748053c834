"""The register of places: pools of free, held and enrolled places per
kindergarten, cohort, language and reserved category, and the
publications (and withdrawals) that fill them."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.queue.models import OPEN_POOL, PlacePool, Publication
from services.queue.store.times import aware

P = PlacePool.__table__
PUB = Publication.__table__
PoolKey = tuple[str, int, str, str]  # kindergarten, cohort, language, for_category (OPEN_POOL: open to all)


def pool(s: Session, kg: str, cohort: int, language: str, for_category: str | None,
         *, create: bool) -> PlacePool | None:
    """The pool, locked for this transaction (created empty if asked)."""
    cat = for_category or OPEN_POOL
    q = (sa.select(PlacePool).where(PlacePool.kindergarten_id == kg, PlacePool.cohort == cohort,
                                    PlacePool.language == language, PlacePool.for_category == cat)
         .with_for_update())
    found = s.scalars(q).one_or_none()
    if found is None and create:
        try:
            with s.begin_nested():
                found = PlacePool(kindergarten_id=kg, cohort=cohort, language=language, for_category=cat,
                                  free=0, held=0, enrolled=0)
                s.add(found)
                s.flush()
        except IntegrityError:  # created by a concurrent publication
            found = s.scalars(q).one()
    return found


def lock_pools_of(s: Session, kids: list[str]) -> dict[PoolKey, tuple[int, int]]:
    """Every pool of these kindergartens, locked in id order: key -> (id, free)."""
    rows = s.execute(sa.select(P.c.id, P.c.kindergarten_id, P.c.cohort, P.c.language, P.c.for_category, P.c.free)
                     .where(P.c.kindergarten_id.in_(kids)).order_by(P.c.id).with_for_update())
    return {(r.kindergarten_id, r.cohort, r.language, r.for_category): (r.id, r.free) for r in rows}


def create_pools(s: Session, keys: Iterable[PoolKey]) -> None:
    ins = (postgresql.insert(P) if s.get_bind().dialect.name == "postgresql" else sqlite.insert(P))
    s.execute(ins.on_conflict_do_nothing(), [dict(kindergarten_id=k, cohort=c, language=lang, for_category=cat,
                                                  free=0, held=0, enrolled=0) for k, c, lang, cat in keys])


def add_free(s: Session, added: dict[int, int]) -> None:
    """Pool id -> places that became free."""
    s.execute(sa.update(P).where(P.c.id == sa.bindparam("pid")).values(free=P.c.free + sa.bindparam("n")),
              [{"pid": pid, "n": n} for pid, n in added.items()])


def hold(s: Session, taken: dict[int, int]) -> None:
    """Pool id -> free places now held by referrals (the CHECK refuses more than are free)."""
    s.execute(sa.update(P).where(P.c.id == sa.bindparam("pid"))
              .values(free=P.c.free - sa.bindparam("n"), held=P.c.held + sa.bindparam("n")),
              [{"pid": pid, "n": n} for pid, n in taken.items()])


def release(s: Session, pool_id: int) -> None:
    """A held place is free again (its referral ended without enrolment)."""
    s.execute(sa.update(P).where(P.c.id == pool_id).values(free=P.c.free + 1, held=P.c.held - 1))


def enrol(s: Session, pool_id: int) -> None:
    s.execute(sa.update(P).where(P.c.id == pool_id).values(held=P.c.held - 1, enrolled=P.c.enrolled + 1))


def free_pools(s: Session, *, lock: bool, within: Iterable[tuple[str, int, str]] | None = None):
    """(id, kindergarten, cohort, language, for_category, free) of every pool with free places, in id order
    (`within`: only of these (kindergarten, cohort, language) groups)."""
    q = (sa.select(P.c.id, P.c.kindergarten_id, P.c.cohort, P.c.language, P.c.for_category, P.c.free)
         .where(P.c.free > 0).order_by(P.c.id))
    if within is not None:
        groups = sorted(within)
        if not groups:
            return []
        q = q.where(sa.tuple_(P.c.kindergarten_id, P.c.cohort, P.c.language).in_(groups))
    if lock:
        # Concurrent runs queue here, and then see each other's referrals.
        q = q.with_for_update()
    return s.execute(q).all()


def publication(kg: str, cohort: int, language: str, for_category: str | None, count: int, *,
                publish_at: datetime, actor: str, now: datetime, published: bool) -> dict:
    return dict(kindergarten_id=kg, cohort=cohort, language=language, for_category=for_category or OPEN_POOL,
                count=count, publish_at=publish_at, published_at=now if published else None, actor=actor,
                created_at=now)


def add_publications(s: Session, rows: list[dict]) -> list[int]:
    return list(s.execute(sa.insert(PUB).returning(PUB.c.id, sort_by_parameter_order=True), rows).scalars())


def due(s: Session, now: datetime) -> list[Publication]:
    q = (sa.select(Publication).where(Publication.published_at.is_(None), Publication.cancelled_at.is_(None),
                                      Publication.publish_at <= now)
         .order_by(Publication.id).limit(100).with_for_update(skip_locked=True))
    return list(s.scalars(q))


# ------------------------------------------------------------------ views


def pool_view(s: Session, kg: str, cohort: int, language: str, for_category: str | None) -> dict:
    row = s.execute(sa.select(P.c.free, P.c.held, P.c.enrolled).where(
        P.c.kindergarten_id == kg, P.c.cohort == cohort, P.c.language == language,
        P.c.for_category == (for_category or OPEN_POOL))).first()
    free, held, enrolled = row if row else (0, 0, 0)
    return {"kindergarten": kg, "cohort": cohort, "language": language, "for_category": for_category,
            "free": free, "held": held, "enrolled": enrolled}


def register(s: Session, kg: str | None = None) -> list[dict]:
    q = sa.select(P).order_by(P.c.kindergarten_id, P.c.cohort, P.c.language, P.c.for_category)
    if kg:
        q = q.where(P.c.kindergarten_id == kg)
    return [{"kindergarten": r.kindergarten_id, "cohort": r.cohort, "language": r.language,
             "for_category": r.for_category or None, "free": r.free, "held": r.held,
             "enrolled": r.enrolled} for r in s.execute(q)]


def group_views(s: Session, kg: str, cohort: int, language: str) -> list[dict]:
    return [{"for_category": r.for_category or None, "free": r.free, "held": r.held, "enrolled": r.enrolled}
            for r in s.execute(sa.select(P).where(P.c.kindergarten_id == kg, P.c.cohort == cohort,
                                                  P.c.language == language))]


def scheduled(s: Session, kgs: Iterable[str] | None = None) -> list[dict]:
    """Publications waiting for their moment (of these kindergartens)."""
    q = (sa.select(Publication).where(Publication.published_at.is_(None), Publication.cancelled_at.is_(None))
         .order_by(Publication.publish_at, Publication.id))
    if kgs is not None:
        q = q.where(Publication.kindergarten_id.in_(list(kgs)))
    return [publication_view(p) for p in s.scalars(q)]


def publication_view(p: Publication) -> dict:
    status = ("cancelled" if p.cancelled_at is not None else "published" if p.published_at is not None
              else "scheduled")
    return {"publication": p.id, "kindergarten": p.kindergarten_id, "cohort": p.cohort,
            "language": p.language, "for_category": p.for_category or None, "count": p.count,
            "publish_at": aware(p.publish_at), "status": status, "actor": p.actor,
            "published_at": aware(p.published_at), "cancelled_at": aware(p.cancelled_at)}


def free_taken(s: Session, pool_id: int) -> int:
    """A taken place is free again (its child left); the pool's free places after it."""
    return s.execute(sa.update(P).where(P.c.id == pool_id)
                     .values(enrolled=P.c.enrolled - 1, free=P.c.free + 1).returning(P.c.free)).scalar_one()


def lock_pool_rows(s: Session, kg: str) -> list[PlacePool]:
    """Every pool of a kindergarten, locked in id order (the allocation's order)."""
    return list(s.scalars(sa.select(PlacePool).where(PlacePool.kindergarten_id == kg)
                          .order_by(PlacePool.id).with_for_update()))


def scheduled_one(s: Session, publication_id: int, *, lock: bool = False) -> Publication | None:
    q = sa.select(Publication).where(Publication.id == publication_id)
    return s.scalars(q.with_for_update() if lock else q).one_or_none()


def cancel_scheduled_of(s: Session, kg: str, actor: str, now: datetime) -> int:
    """Calls off every publication of `kg` still waiting for its moment."""
    return s.execute(sa.update(PUB).where(PUB.c.kindergarten_id == kg, PUB.c.published_at.is_(None),
                                          PUB.c.cancelled_at.is_(None))
                     .values(cancelled_at=now, cancelled_by=actor)).rowcount
