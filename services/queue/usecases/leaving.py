"""An enrolled child leaves its kindergarten (DOMAIN.md section 3): the place
becomes free at once and the allocation runs, in the same transaction as
the child's application closes (status `left`; the PIN may join the queue
again, with a new queue date)."""
from __future__ import annotations

from services.queue.domain.placement import check_can_leave
from services.queue.domain.refusals import NotFound
from services.queue.store import entries, places, referrals
from services.queue.usecases.closing import closed
from services.queue.usecases.work import Actor, Context


class Leaving:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def leave(self, app_id: str, *, actor: Actor, kindergarten: str | None = None, reason: str = "") -> dict:
        """The child `app_id` leaves (the kindergarten `kindergarten`, when the
        kindergarten says so: a child it never had is not found there)."""
        reason = " ".join((reason or "").split())[:200]
        with self.ctx.uow() as w:
            # The referral and its pool before the child, in the allocation's
            # order of locks: no deadlock with a run.
            ref = referrals.placement(w.s, app_id, kindergarten)
            if ref is None and kindergarten is not None:
                raise NotFound("child_not_enrolled_here", field="application_id", application_id=app_id,
                               kindergarten=kindergarten)
            if ref is None or ref.status != "enrolled":
                check_can_leave(entries.lock(w.s, app_id, lock=False).status)
            assert ref is not None
            now = w.now()
            free = places.free_taken(w.s, ref.place_id)
            app = entries.lock(w.s, app_id)
            check_can_leave(app.status)
            ref.status, ref.outcome = "ended", "left"
            app.status, app.left_at, app.updated_at = "left", now, now
            kg, cat = ref.kindergarten_id, ref.for_category or None
            place = f"place:{kg}/{ref.cohort}/{ref.language}"
            w.emit("place.freed.v1", place, {
                "kindergarten_id": kg, "cohort": ref.cohort, "language": ref.language, "for_category": cat,
                "referral_id": str(ref.id), "free": free}, time=now)
            w.emit("application.left.v1", f"application:{app.id}", {
                "application_id": app.id, "parent_id": app.parent_id, "kindergarten_id": kg,
                "referral_id": str(ref.id), "left_at": now.isoformat(), "reason": reason}, time=now)
            closed(w, app.id, app.parent_id, "left", now)
            w.audit(actor, "application.left", f"application:{app.id}",
                    {"kindergarten": kg, "referral_id": ref.id, "reason": reason or None})
            w.audit(actor, "place.freed", place, {"referral_id": ref.id, "free": free, "for_category": cat})
            w.request_allocation(f"a place freed at {kg}: {app.id} left", pools=[(kg, ref.cohort, ref.language)])
        with self.ctx.read() as w:
            return entries.view_with_referral(w.s, app_id)
