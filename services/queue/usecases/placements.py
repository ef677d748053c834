"""What a kindergarten's staff (and its district office) read: the referrals
to the kindergarten, live ones by the nearest deadline, and the children
enrolled in it. Personal data: the routes record each staff look."""
from __future__ import annotations

from datetime import timedelta

from services.queue.domain.refusals import NotFound
from services.queue.store import kindergartens, placements as store
from services.queue.usecases.work import Context

RECENT = timedelta(days=31)   # ended referrals and children who left, shown this long


class Placements:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def referrals(self, kg: str, *, live: bool = True) -> list[dict]:
        with self.ctx.read() as w:
            kindergartens.get(w.s, kg)
            return store.referrals_to(w.s, kg, live=live, since=None if live else w.now() - RECENT)

    def referral(self, kg: str, referral_id: int) -> dict:
        with self.ctx.read() as w:
            found = store.referral_to(w.s, kg, referral_id)
            if found is None:
                raise NotFound("referral_not_here", field="referral_id", referral_id=referral_id, kindergarten=kg)
            return found

    def children(self, kg: str) -> list[dict]:
        with self.ctx.read() as w:
            kindergartens.get(w.s, kg)
            return store.children_of(w.s, kg, left_since=w.now() - RECENT)
