"""Kindergartens: created and renamed by administrators, read by everyone."""
from __future__ import annotations

from typing import Any

from services.queue.store import kindergartens as store
from services.queue.usecases.work import Actor, Context


class Kindergartens:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def save(self, data: dict[str, Any], *, actor: Actor) -> dict:
        """Creates or updates the kindergarten `data["id"]`."""
        kid = data["id"]
        values = {k: data[k] for k in store.FIELDS if k in data}
        with self.ctx.uow() as w:
            created = store.save(w.s, kid, values, w.now())
            w.audit(actor, "kindergarten.created" if created else "kindergarten.updated", f"kindergarten:{kid}",
                    {"values": values})
        return self.get(kid)

    def get(self, kid: str) -> dict:
        with self.ctx.read() as w:
            return store.view(store.get(w.s, kid))

    def districts(self, kids: set[str]) -> dict[str, str]:
        """The district of each of these kindergartens (unknown ones left out)."""
        with self.ctx.read() as w:
            return {k: kg.district for k, kg in store.many(w.s, kids).items()}

    def list(self, district: str | None = None) -> list[dict]:
        with self.ctx.read() as w:
            return store.listed(w.s, district)
