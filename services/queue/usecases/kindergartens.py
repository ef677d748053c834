"""Kindergartens: created, edited and closed by administrators and by the
district office for its own district (the scope is the API's), read by
everyone. The closing rule is in domain/placement.py."""
from __future__ import annotations

from typing import Any

from services.queue.domain.placement import check_closable, check_languages_kept
from services.queue.domain.refusals import Refused
from services.queue.models import Kindergarten, Publication
from services.queue.store import entries, kindergartens as store, places
from services.queue.usecases.work import Actor, Context, UnitOfWork, name

CLOSING = "the kindergarten closed"


class Kindergartens:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def save(self, data: dict[str, Any], *, actor: Actor) -> dict:
        """Creates or updates the kindergarten `data["id"]`; it keeps the
        languages it has places in, and a closed one is not changed."""
        kid = data["id"]
        values = {k: data[k] for k in store.FIELDS if k in data}
        with self.ctx.uow() as w:
            existing = w.s.get(Kindergarten, kid, with_for_update=True)
            if existing is not None:
                if existing.closed_at is not None:
                    raise Refused("kindergarten_closed", field="kindergarten", kindergarten=kid)
                if "languages" in values:
                    in_use = {p["language"] for p in places.register(w.s, kid) if p["free"] or p["held"]
                              or p["enrolled"]}
                    check_languages_kept(kid, existing.languages or [], values["languages"], in_use)
            created = store.save(w.s, kid, values, w.now())
            w.audit(actor, "kindergarten.created" if created else "kindergarten.updated", f"kindergarten:{kid}",
                    {"values": values})
        return self.get(kid)

    def close(self, kid: str, *, actor: Actor, reason: str = "") -> dict:
        """Closes an empty kindergarten (domain/placement.py): its free places
        are withdrawn, its scheduled publications called off, and it leaves
        the preferences of every child who lists it."""
        reason = " ".join((reason or "").split())[:200]
        with self.ctx.uow() as w:
            kg = store.get(w.s, kid, lock=True)
            if kg.closed_at is not None:
                return store.view(kg)
            pools = places.lock_pool_rows(w.s, kid)
            check_closable(kid, sum(p.held for p in pools), sum(p.enrolled for p in pools))
            now = w.now()
            withdrawn = sum(_withdraw_all(w, kid, p, actor) for p in pools if p.free)
            called_off = places.cancel_scheduled_of(w.s, kid, name(actor), now)
            dropped = _leave_preferences(w, kid, actor)
            kg.closed_at = now
            w.audit(actor, "kindergarten.closed", f"kindergarten:{kid}",
                    {"withdrawn": withdrawn, "publications_called_off": called_off, "preferences_dropped": dropped,
                     "reason": reason or None})
            return store.view(kg)

    def get(self, kid: str) -> dict:
        with self.ctx.read() as w:
            return store.view(store.get(w.s, kid))

    def districts(self, kids: set[str]) -> dict[str, str]:
        """The district of each of these kindergartens (unknown ones left out)."""
        with self.ctx.read() as w:
            return {k: kg.district for k, kg in store.many(w.s, kids).items()}

    def list(self, district: str | None = None, *, closed: bool = False) -> list[dict]:
        with self.ctx.read() as w:
            return store.listed(w.s, district, closed=closed)


def _withdraw_all(w: UnitOfWork, kid: str, pool, actor: Actor) -> int:
    count, now = pool.free, w.now()
    cat = pool.for_category or None
    pool.free = 0
    w.s.add(Publication(**places.publication(kid, pool.cohort, pool.language, cat, -count, publish_at=now,
                                             actor=name(actor), now=now, published=True)))
    subject = f"place:{kid}/{pool.cohort}/{pool.language}"
    w.emit("place.withdrawn.v1", subject, {"kindergarten_id": kid, "cohort": pool.cohort, "language": pool.language,
                                           "for_category": cat, "count": count, "free": 0}, time=now)
    w.audit(actor, "place.withdrawn", subject, {"count": count, "for_category": cat, "free": 0, "reason": CLOSING})
    return count


def _leave_preferences(w: UnitOfWork, kid: str, actor: Actor) -> int:
    """The closed kindergarten leaves every open entry's preferences (the
    others keep their order); the children's positions are recomputed."""
    changed = entries.listing(w.s, kid)
    for app in changed:
        before = list(app.preferences)
        app.preferences, app.updated_at = [k for k in before if k != kid], w.now()
        w.audit(actor, "application.preferences_changed", f"application:{app.id}",
                {"from": before, "to": list(app.preferences), "reason": CLOSING})
        w.entry_moved(app.cohort, before)
    return len(changed)
