"""The unit of work every queue use case runs in: one transaction that
changes the state and, with it, writes the events (outbox), the audit rows
and the marks that wake the allocator and the position publisher."""
from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kezek import calendar as kcal
from kezek.logging import get_logger
from kezek.trust import PARENT, SERVICE, STAFF_ROLES, Principal, parent_principal
from services.queue.domain.policy import Policy
from services.queue.models import outbox
from services.queue.store import audit, marks, policies
from services.queue.store.allocation import StaleRead
from services.queue.store.times import utc

log = get_logger(__name__)
T = TypeVar("T")
# Who acts: a verified principal (from a service token), or the name of the
# queue's own cause of a change (its allocator, a consumed event, an import,
# a referral workflow's act) when the queue acts for itself.
Actor = Principal | str

# A concurrent change won: a CHECK or unique index refused the write (also
# through the raw driver, which the bulk writes on PostgreSQL use), a
# deadlock or serialization failure, or a child changed since it was read.
RETRYABLE = (IntegrityError, OperationalError, StaleRead, psycopg.IntegrityError, psycopg.OperationalError)


def principal(actor: Actor) -> Principal:
    """The actor as the audit trail records it. A name is the queue's own
    cause ("system:allocator", "event:<id>", "import:<source>") or an actor a
    referral workflow reports ("parent:<id>" as the gateway verified it, a
    staff role, "system" for its timers)."""
    if isinstance(actor, Principal):
        return actor
    role, _, ident = actor.partition(":")
    if role == PARENT and ident:
        return parent_principal(ident)
    if role in STAFF_ROLES and ident:
        return Principal(actor=actor, role=role)
    return Principal(actor=actor, role=SERVICE)


def name(actor: Actor) -> str:
    """The actor as a row other than the audit trail keeps it."""
    return actor if isinstance(actor, str) else actor.actor


class Context:
    """What every use case needs: the database, the clock, the country, and
    whom to wake when a change asks for an allocation."""

    def __init__(self, sessions: sessionmaker[Session], *, country: str = "KG",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_allocation_requested: Callable[[], None] | None = None):
        self.sessions = sessions
        self.country = country
        self.clock = clock
        self.on_allocation_requested = on_allocation_requested or (lambda: None)

    def now(self) -> datetime:
        return utc(self.clock())

    def today(self, policy: Policy | None = None) -> date:
        return kcal.calendar(policy.country if policy else self.country).local_date(self.now())

    @contextmanager
    def uow(self) -> Iterator[UnitOfWork]:
        """One transaction, committed at the end unless it raised."""
        with self.sessions() as s, s.begin():
            yield UnitOfWork(self, s)

    @contextmanager
    def read(self) -> Iterator[UnitOfWork]:
        """A session that reads (and is closed without a commit)."""
        with self.sessions() as s:
            yield UnitOfWork(self, s)

    def within(self, s: Session) -> UnitOfWork:
        """The caller's transaction (a consumer's, which also records the event id)."""
        return UnitOfWork(self, s)

    def retried(self, step: Callable[[], T], *, on: tuple[type[BaseException], ...], attempts: int,
                event: str | None = None) -> T:
        """`step` again when a concurrent change made it fail (`on`), up to
        `attempts` times; `event`: log each retry and pause a little first."""
        for attempt in range(attempts):
            try:
                return step()
            except on as exc:
                if attempt == attempts - 1:
                    raise
                if event is not None:
                    log.info(event, attempt=attempt + 1, reason=type(exc).__name__,
                             error=str(exc).splitlines()[0][:200] if str(exc) else "")
                    time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")


class UnitOfWork:
    """One transaction of the queue's database, with the writes that go
    along with every change."""

    def __init__(self, ctx: Context, s: Session):
        self.ctx = ctx
        self.s = s
        self._policy: tuple[Policy, int | None] | None = None

    def now(self) -> datetime:
        return self.ctx.now()

    @property
    def pg(self) -> bool:
        return self.s.get_bind().dialect.name == "postgresql"

    def policy(self) -> tuple[Policy, int | None]:
        """The policy in force and its version (None: the defaults)."""
        if self._policy is None:
            self._policy = policies.current(self.s, self.ctx.country)
        return self._policy

    def audit(self, actor: Actor, action: str, subject: str, details: dict | None = None,
              at: datetime | None = None) -> None:
        audit.record(self.s, at or self.now(), principal(actor), action, subject, details)

    def audit_many(self, actor: Actor, rows: list[dict], at: datetime | None = None) -> None:
        """Rows of action, subject and details, all by one actor."""
        audit.record_many(self.s, at or self.now(), principal(actor), rows)

    def emit(self, event_type: str, subject: str, data: dict[str, Any], *, time: datetime | None = None) -> None:
        outbox.add(self.s, event_type, subject, data, time=time)

    def emit_many(self, event_type: str, items: Iterable[tuple[str, dict[str, Any]]], *,
                  time: datetime | None = None) -> int:
        return outbox.add_many(self.s, event_type, items, time=time)

    def request_allocation(self, reason: str, dedupe_key: str | None = None,
                           pools: marks.Pools | None = None) -> bool:
        """Something that can change the outcome happened: the allocator runs
        once this commits. False if the day's request was there already.
        `pools`: every (kindergarten, cohort, language) group of places the
        change may have made takeable, i.e. where a place came free, and each
        kindergarten a child who now waits (joined, back from a referral or
        the stop-list, new preferences or category) lists in its cohort and
        language; the run after it then reads only those. None: every pool.
        A pool left out here is a place nobody gets until the day's full run."""
        if not marks.request_allocation(self.s, reason, self.now(), dedupe_key, pools):
            return False
        self._wake_after_commit()
        return True

    def positions_moved(self, pools: Iterable[tuple[int, str]] | None) -> None:
        """These (cohort, kindergarten) pools' waiting children may have moved
        (None: every pool). Recorded in the change's own transaction, so the
        publication that follows cannot be lost; the allocator loop publishes."""
        if marks.mark_pools(self.s, pools):
            self._wake_after_commit()

    def entry_waits(self, reason: str, app, *more: tuple[str, int, str]) -> None:
        """An allocation for a child who may now take a place it could not
        before (joined, new preferences or category, back from a referral or
        the stop-list): the groups of places it lists, and `more`."""
        self.request_allocation(reason, pools=[*((k, app.cohort, app.language) for k in app.preferences), *more])

    def entry_moved(self, cohort: int, *preference_lists: Iterable[str]) -> None:
        self.positions_moved({(cohort, k) for prefs in preference_lists for k in prefs})

    def _wake_after_commit(self) -> None:
        s = self.s
        if not s.info.get("wake_hooked"):
            # Wake the allocator once the request is committed, not before.
            s.info["wake_hooked"] = True
            ctx = self.ctx

            def after_commit(session: Session) -> None:
                session.info.pop("wake_hooked", None)
                ctx.on_allocation_requested()
            sa.event.listen(s, "after_commit", after_commit, once=True)
