"""The queue's use cases, one module each, around the pure rules of
`services/queue/domain/`; every write is one unit of work (`work.py`) with
its events, audit rows and the marks that wake the allocator.

- entries.py           join (one entry per child PIN), remove, preferences, privilege revoked
- places.py            publish (now or on a schedule), withdraw
- allocation.py        the allocator's run: serial dictatorship, referrals, the run's record
- positions.py         application.position_changed for the children who moved
- referral_effects.py  the ReferralWorkflow's effects: place returned, stop-list, enrolment
- ageing.py            children who reach school age leave the queue (the daily job, and after a referral)
- closing.py           application.closed: an application's life in the queue ended
- family.py            the family's own copy of what the queue holds; its request to erase a closed application
- imports.py           the move from the old portal, in batches
- leaving.py           an enrolled child leaves: the place is free at once, the allocation runs
- placements.py        the referrals to a kindergarten and its children, for its staff
- figures.py           the published figures of a district or the country
- policy.py            the policy's versions
- kindergartens.py     the kindergartens: created, edited, closed
- views.py             entries, positions with why, the public queue, the register
- audit.py             the audit trail, runs and their replay, the invariants

`Queue` wires them to one database and clock; callers use its parts
(`queue.entries.join(...)`, `queue.allocation.process_requests()` ...).
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from kezek.retention import RetentionPolicy

from services.queue.usecases.ageing import Ageing
from services.queue.usecases.allocation import Allocator
from services.queue.usecases.audit import Audit
from services.queue.usecases.entries import Entries
from services.queue.usecases.family import Family
from services.queue.usecases.figures import Figures
from services.queue.usecases.imports import Imports
from services.queue.usecases.kindergartens import Kindergartens
from services.queue.usecases.leaving import Leaving
from services.queue.usecases.placements import Placements
from services.queue.usecases.places import Places
from services.queue.usecases.policy import Policies
from services.queue.usecases.positions import Positions
from services.queue.usecases.referral_effects import ReferralEffects
from services.queue.usecases.views import Views
from services.queue.usecases.work import Context


class Queue:
    """The queue's use cases, wired to one database, clock and country."""

    def __init__(self, sessions: sessionmaker[Session], *, country: str = "KG",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_allocation_requested: Callable[[], None] | None = None,
                 retention: RetentionPolicy | None = None):
        self.ctx = Context(sessions, country=country, clock=clock, on_allocation_requested=on_allocation_requested)
        self.policy = Policies(self.ctx)
        self.kindergartens = Kindergartens(self.ctx)
        self.entries = Entries(self.ctx)
        self.places = Places(self.ctx)
        self.positions = Positions(self.ctx)
        self.allocation = Allocator(self.ctx, self.positions)
        self.referrals = ReferralEffects(self.ctx)
        self.ageing = Ageing(self.ctx)
        self.family = Family(self.ctx, retention)
        self.imports = Imports(self.ctx)
        self.views = Views(self.ctx)
        self.leaving = Leaving(self.ctx)
        self.placements = Placements(self.ctx)
        self.figures = Figures(self.ctx)
        self.audit = Audit(self.ctx)

    @property
    def sessions(self) -> sessionmaker[Session]:
        return self.ctx.sessions

    def wake_with(self, wake: Callable[[], None]) -> None:
        """Whom to call once a change that asks for an allocation commits."""
        self.ctx.on_allocation_requested = wake
