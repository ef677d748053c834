"""Position events (application.position_changed): published whenever a
waiting child's position (domain.positions.position: its rank among the
waiting children of its cohort who list its first preference) differs from
the one last published. Changes mark the pools they touched; this recomputes
only those, in a transaction of its own right after them."""
from __future__ import annotations

import sqlalchemy as sa

from kezek.logging import get_logger
from services.queue.models import outbox
from services.queue.store import kindergartens, marks, positions as generic, positions_pg
from services.queue.usecases.work import RETRYABLE, Context, UnitOfWork

log = get_logger(__name__)

POSITION_CHANGED = "application.position_changed.v1"


class Positions:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def publish(self, *, attempts: int = 5) -> int:
        """One event for every child whose position moved, computed only for
        the pools a change marked. Re-runnable: a failure leaves the marks,
        and a child whose published position is current gets no second
        event. Returns the number of events written."""
        def attempt() -> int:
            with self.ctx.uow() as w:
                return self._publish(w)
        return self.ctx.retried(attempt, on=RETRYABLE, attempts=attempts, event="positions.retry")

    def _publish(self, w: UnitOfWork) -> int:
        if not marks.any_marked(w.s):
            return 0
        if w.pg:
            # One publisher at a time: two would compare against the same
            # last-published positions and announce one move twice.
            w.s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('kezek.queue.positions'))"))
        marked = marks.take_marks(w.s)
        if not marked:
            return 0
        pools = None if any(c is None for c, _ in marked) else sorted({(c, k) for c, k in marked})
        policy, _ = w.policy()
        now = w.now()
        if w.pg:
            # Built and written by the database: after a national run some
            # 700,000 events, none of which needs to pass through Python.
            n = positions_pg.publish_changed(w.s, pools, policy, now, outbox, POSITION_CHANGED)
            log.info("positions.published", pools=len(pools) if pools is not None else "all", events=n)
            return n
        changed = generic.save_changed(w.s, pools, policy, now)
        names = kindergartens.names(w.s) if changed else {}
        n = w.emit_many(POSITION_CHANGED, ((f"application:{app_id}", event_data(app_id, parent, kg, names.get(kg),
                                                                               pos, previous))
                                           for app_id, parent, kg, pos, previous in changed), time=now)
        log.info("positions.published", pools=len(pools) if pools is not None else "all", events=n)
        return n


def event_data(app_id: str, parent_id: str | None, kg: str, kg_name: str | None, position: int,
               previous: int | None) -> dict:
    data = {"application_id": app_id, "position": position, "previous_position": previous, "kindergarten_id": kg}
    if parent_id:
        data["parent_id"] = parent_id
    if kg_name:
        data["kindergarten_name"] = kg_name
    return data
