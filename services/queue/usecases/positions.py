"""Position events (application.position_changed): published whenever a
waiting child's position (domain.positions.position: its rank among the
waiting children of its cohort who list its first preference) differs from
the one last published. Changes mark the pools they touched; this recomputes
only those, in a transaction of its own right after them."""
from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from kezek.logging import get_logger
from services.queue.models import outbox
from services.queue.store import kindergartens, marks, positions as generic, positions_pg
from services.queue.usecases.work import RETRYABLE, Context, UnitOfWork

log = get_logger(__name__)

POSITION_CHANGED = "application.position_changed.v1"
SHARES = 2  # connections that publish a large publication's pools at once (PostgreSQL)
SHARED_FROM = 1_000  # marked pools from which a publication is split into shares


class Positions:
    def __init__(self, ctx: Context, *, shares: int = SHARES, shared_from: int = SHARED_FROM):
        self.ctx = ctx
        self.shares = shares
        self.shared_from = shared_from

    def publish(self, *, attempts: int = 5) -> int:
        """One event for every child whose position moved, computed only for
        the pools a change marked. Re-runnable: a failure leaves the marks,
        and a child whose published position is current gets no second
        event. Returns the number of events written."""
        def attempt() -> int:
            failed: list[BaseException] = []
            with self.ctx.uow() as w:
                n = self._publish(w, failed)
            if failed:
                # Raised after this transaction's commit: its share stands.
                raise failed[0]
            return n
        return self.ctx.retried(attempt, on=RETRYABLE, attempts=attempts, event="positions.retry")

    def _publish(self, w: UnitOfWork, failed: list[BaseException]) -> int:
        if not marks.any_marked(w.s):
            return 0
        if w.pg:
            # One publisher at a time: two would compare against the same
            # last-published positions and announce one move twice.
            w.s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('kezek.queue.positions'))"))
            if self.shares > 1 and (marks.marked_pools(w.s) or 0) >= self.shared_from:
                return self._publish_shares(w, failed)
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

    def _publish_shares(self, w: UnitOfWork, failed: list[BaseException]) -> int:
        """A large publication (a national run's) split into disjoint shares
        of the marked pools, by kindergarten, published at once: share 0 in
        the caller's transaction, which holds the publishers' lock until
        every share has ended, each other one in a transaction of its own
        (one core's work spread over several; `shares` connections). Each
        child's event comes from its first preference's pool, so from one
        share, as a single publication would write it (the same policy and
        `now`). A share that fails leaves its pools marked for the next
        publication (`failed`: the other transactions' errors); the others'
        events stand. The marks a share takes stay locked until it ends, so
        no other publisher takes them meanwhile."""
        policy, _ = w.policy()
        now = w.now()

        def share(i: int, w: UnitOfWork) -> int:
            pools = sorted({(c, k) for c, k in marks.take_marks(w.s, (i, self.shares))})
            return positions_pg.publish_changed(w.s, pools, policy, now, outbox, POSITION_CHANGED) if pools else 0

        def other(i: int) -> int:
            def attempt() -> int:
                with self.ctx.uow() as own:
                    return share(i, own)
            return self.ctx.retried(attempt, on=RETRYABLE, attempts=5, event="positions.retry")

        with ThreadPoolExecutor(self.shares - 1, thread_name_prefix="positions-share") as pool:
            # In copies of the caller's context: their events carry its trace.
            others = [pool.submit(contextvars.copy_context().run, other, i) for i in range(1, self.shares)]
            n = share(0, w)
        failed.extend(f.exception() for f in others if f.exception() is not None)
        n += sum(f.result() for f in others if f.exception() is None)
        log.info("positions.published", shares=self.shares, events=n, failed=len(failed))
        return n


def event_data(app_id: str, parent_id: str | None, kg: str, kg_name: str | None, position: int,
               previous: int | None) -> dict:
    data = {"application_id": app_id, "position": position, "previous_position": previous, "kindergarten_id": kg}
    if parent_id:
        data["parent_id"] = parent_id
    if kg_name:
        data["kindergarten_name"] = kg_name
    return data
