"""Free places (DOMAIN.md section 3): published by a kindergarten or on the
district's schedule, optionally reserved for one category, withdrawn while
still free. A publication asks for an allocation at once."""
from __future__ import annotations

from datetime import datetime

from services.queue.domain.places import check_publication
from services.queue.domain.refusals import NotFound, Refused
from services.queue.models import Publication
from services.queue.store import kindergartens, places as store
from services.queue.store.times import utc
from services.queue.usecases.work import Actor, Context, UnitOfWork, name


class Places:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def publish(self, kg: str, cohort: int, language: str, count: int, *, actor: Actor,
                for_category: str | None = None, publish_at: datetime | None = None) -> dict:
        """Free places for a kindergarten, cohort and language, optionally
        reserved for one category, now or on a schedule."""
        now = self.ctx.now()
        with self.ctx.uow() as w:
            check_places(w, kg, cohort, language, count, for_category)
            when = utc(publish_at) if publish_at else now
            pub = Publication(**store.publication(kg, cohort, language, for_category, count, publish_at=when,
                                                  actor=name(actor), now=now, published=False))
            w.s.add(pub)
            w.s.flush()
            if when <= now:
                publish_now(w, pub, now)
            else:
                w.audit(actor, "place.scheduled", f"place:{kg}/{cohort}/{language}",
                        {"count": count, "for_category": for_category, "publish_at": when.isoformat(),
                         "publication": pub.id})
            return {"publication": pub.id, "published": pub.published_at is not None,
                    "publish_at": when, **store.pool_view(w.s, kg, cohort, language, for_category)}

    def publish_due(self) -> int:
        """Scheduled publications whose moment has come (the background loop)."""
        now = self.ctx.now()
        with self.ctx.uow() as w:
            due = store.due(w.s, now)
            for pub in due:
                publish_now(w, pub, now)
            return len(due)

    def cancel(self, publication_id: int, *, actor: Actor) -> dict:
        """Calls off a publication still waiting for its moment."""
        with self.ctx.uow() as w:
            pub = store.scheduled_one(w.s, publication_id, lock=True)
            if pub is None:
                raise NotFound("publication_unknown", field="publication", publication=publication_id)
            view = store.publication_view(pub)
            if view["status"] != "scheduled":
                raise Refused("publication_not_scheduled", field="publication", publication=publication_id,
                              status=view["status"])
            pub.cancelled_at, pub.cancelled_by = w.now(), name(actor)
            w.audit(actor, "place.schedule_cancelled", f"place:{pub.kindergarten_id}/{pub.cohort}/{pub.language}",
                    {"publication": pub.id, "count": pub.count, "for_category": pub.for_category or None,
                     "publish_at": view["publish_at"].isoformat()})
            return store.publication_view(pub)

    def publication(self, publication_id: int) -> dict:
        with self.ctx.read() as w:
            pub = store.scheduled_one(w.s, publication_id)
            if pub is None:
                raise NotFound("publication_unknown", field="publication", publication=publication_id)
            return store.publication_view(pub)

    def withdraw(self, kg: str, cohort: int, language: str, count: int, *, actor: Actor,
                 for_category: str | None = None) -> dict:
        """Takes away free places only; never a held one."""
        now = self.ctx.now()
        with self.ctx.uow() as w:
            check_places(w, kg, cohort, language, count, for_category)
            pool = store.pool(w.s, kg, cohort, language, for_category, create=False)
            free = pool.free if pool else 0
            if count > free:
                raise Refused("withdraw_more_than_free", field="count", free=free)
            pool.free -= count
            w.s.add(Publication(**store.publication(kg, cohort, language, for_category, -count, publish_at=now,
                                                    actor=name(actor), now=now, published=True)))
            w.emit("place.withdrawn.v1", f"place:{kg}/{cohort}/{language}", {
                "kindergarten_id": kg, "cohort": cohort, "language": language, "for_category": for_category,
                "count": count, "free": pool.free}, time=now)
            w.audit(actor, "place.withdrawn", f"place:{kg}/{cohort}/{language}",
                    {"count": count, "for_category": for_category, "free": pool.free})
            return store.pool_view(w.s, kg, cohort, language, for_category)


def check_places(w: UnitOfWork, kg: str, cohort: int, language: str, count: int, for_category: str | None) -> None:
    """A known open kindergarten teaching in the language, 1 to 10,000 places,
    a preschool birth year, a known category to reserve them for."""
    policy, _ = w.policy()
    if kindergartens.get(w.s, kg).closed_at is not None:
        raise Refused("kindergarten_closed", field="kindergarten", kindergarten=kg)
    check_publication(kg, kindergartens.languages(w.s, [kg]).get(kg), language, count, cohort, for_category, policy,
                      w.ctx.today(policy).year)


def publish_now(w: UnitOfWork, pub: Publication, now: datetime) -> None:
    pool = store.pool(w.s, pub.kindergarten_id, pub.cohort, pub.language, pub.for_category or None, create=True)
    pool.free += pub.count
    pub.published_at = now
    cat = pub.for_category or None
    place = f"place:{pub.kindergarten_id}/{pub.cohort}/{pub.language}"
    w.emit("place.published.v1", place, {
        "kindergarten_id": pub.kindergarten_id, "cohort": pub.cohort, "language": pub.language,
        "for_category": cat, "count": pub.count, "free": pool.free}, time=now)
    w.audit(pub.actor, "place.published", place,
            {"count": pub.count, "for_category": cat, "publication": pub.id, "free": pool.free})
    w.request_allocation(f"{pub.count} places published at {pub.kindergarten_id}",
                         pools=[(pub.kindergarten_id, pub.cohort, pub.language)])
