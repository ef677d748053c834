"""Allocation (DOMAIN.md section 3): nobody asks for it. Every change that can
alter its outcome (places published or returned, a child joining, a
privilege rejected, a stop-list ended, a new day on which children turn 2)
writes an allocation request in its own transaction; the allocator loop then
runs one allocation at once. A run is safe against concurrent changes by
the database: pools with free places are locked for the run, place counters
carry CHECK constraints, a partial unique index allows one live referral per
child, and a run whose reads went stale is rolled back and retried."""
from __future__ import annotations

import contextvars
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek import calendar as kcal
from kezek.logging import get_logger
from services.queue.domain.allocation import Allocation, FreePlaces, allocate_ranked, groups_of
from services.queue.domain.policy import Policy
from services.queue.domain.ranking import Applicant, PlaceKey, latest_eligible_birth_date
from services.queue.models import OPEN_POOL
from services.queue.store import allocation as generic, allocation_pg, marks, places
from services.queue.store import runs
from services.queue.store.times import utc
from services.queue.usecases.positions import Positions
from services.queue.usecases.work import RETRYABLE, Context, UnitOfWork, principal
from workflows import rules

log = get_logger(__name__)

ALLOCATOR = "system:allocator"
# Who records a referral's issue in the audit trail: the actor the
# workflow's record_referral wrote it as before the allocation announced it.
ISSUER = "system"
_BIG_RUN = 1000  # referrals in one run after which the preference index is tidied at once
# Referrals written together. On PostgreSQL a batch is written while the
# rule goes on with the next one, so the database and the rule each keep a
# core busy; small enough that the last batch, written after the rule, is
# a small part of the writes.
BATCH = 4000


@dataclass(frozen=True)
class Issued:
    referral_id: int
    application_id: str
    place: PlaceKey
    for_category: str | None
    preference_index: int


@dataclass
class RunResult:
    run_id: int | None
    issued: list[Issued] = field(default_factory=list)
    candidates: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    positions_published: int = 0


Pool = tuple[PlaceKey, str | None]  # a place key and the category it is reserved for (None: open)


class Allocator:
    def __init__(self, ctx: Context, positions: Positions):
        self.ctx = ctx
        self.positions = positions

    def process_requests(self) -> RunResult | None:
        """Allocates if anything asked for it since the last run, then
        publishes the positions that moved (the run's and other changes').
        Neither asked for nor marked: one read, and nothing more (the
        allocator loop asks four times a second; publishing found nothing in
        a write transaction of its own)."""
        with self.ctx.read() as w:
            pending = marks.allocation_requested(w.s)
            if not pending and not marks.any_marked(w.s):
                return None
        run = self.run(requested=True) if pending else None
        t = time.perf_counter()
        published = self.positions.publish()
        if run is not None:
            run.timings["positions"] = time.perf_counter() - t
            run.positions_published = published
        return run

    def request_daily(self) -> bool:
        """Once per local day, at 00:00: children turning 2 today become eligible."""
        day = self.ctx.today()
        with self.ctx.uow() as w:
            return w.request_allocation(f"new day {day}: birthdays", dedupe_key=f"day:{self.ctx.country}:{day}")

    def run(self, *, lock: bool = True, attempts: int = 8, requested: bool = False) -> RunResult:
        """One allocation run over every pool with free places (`requested`:
        only over the pools the pending requests name, see `_scope`). Retried
        when a concurrent change made its reads stale (the database refuses
        the write: a CHECK, the unique live-referral index, a deadlock)."""
        def attempt() -> RunResult:
            with self.ctx.uow() as w:
                return self._run(w, lock=lock, requested=requested)
        result = self.ctx.retried(attempt, on=RETRYABLE, attempts=attempts, event="allocation.retry")
        if len(result.issued) >= _BIG_RUN:
            self._tidy_preference_index(result)
        return result

    def _tidy_preference_index(self, result: RunResult) -> None:
        """A big run leaves its changed rows in the GIN index's pending list,
        which every position query would then scan; merge them now rather
        than wait for autovacuum. Best effort: the run is already committed."""
        t = time.perf_counter()
        try:
            with self.ctx.read() as w:
                if w.pg:
                    w.s.execute(sa.text("SELECT gin_clean_pending_list('ix_applications_prefs')"))
                    w.s.commit()
        except Exception as exc:
            log.warning("allocation.index_upkeep_failed", error=repr(exc))
        result.timings["index_upkeep"] = time.perf_counter() - t

    def _scope(self, w: UnitOfWork, named: set[tuple[str, int, str]] | None, on: date,
               version: int | None) -> set[tuple[str, int, str]] | None:
        """The pools a run after these requests must read (None: every pool).

        A run leaves no free place that a waiting child could take: each
        child took its best preference with a free place when its turn came,
        so a place left free is in no waiting, old enough child's list (of
        its cohort, language and category). Such a place stays untakeable
        until a change makes it takeable, and every such change names its
        pools in its request (UnitOfWork.request_allocation): a place freed
        there, or a child now waiting who lists that kindergarten. Serial
        dictatorship over the named pools therefore gives what it gives over
        every pool: a place nobody can take changes nobody's turn. Two
        changes name no pools and make this run read everything: a policy
        change, and a new day (children turn 2), which is also why the first
        run of a day or of a policy version reads every pool."""
        if named is None:
            return None
        last = runs.latest(w.s)
        if last is None or last["on_date"] != on or (last["policy"] or {}).get("version") != version:
            return None
        return named

    def _run(self, w: UnitOfWork, *, lock: bool, requested: bool = False) -> RunResult:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        now = w.now()
        policy, version = w.policy()
        on = kcal.calendar(policy.country).local_date(now)
        requests, named = marks.pending_requests(w.s)
        scope = self._scope(w, named, on, version) if requested else None
        free: dict[Pool, int] = {}
        pool_id: dict[Pool, int] = {}
        for pid, kg, cohort, lang, cat, n in places.free_pools(w.s, lock=lock, within=scope):
            key = (PlaceKey(kg, cohort, lang), cat or None)
            free[key], pool_id[key] = n, pid
        timings["lock_pools"] = time.perf_counter() - t0
        if not free:
            marks.requests_done(w.s, requests, now)
            return RunResult(None, timings=timings)

        # The run's record first: each batch of referrals refers to it.
        trigger = f"{len(requests)} requests" + ("" if scope is None else f", {len(scope)} pool groups named")
        run_id = runs.start(w.s, at=now, on=on, trigger=trigger,
                            policy={**policy.to_dict(), "version": version},
                            free_before=[[k.kindergarten, k.cohort, k.language, cat, n] for (k, cat), n in sorted(
                                free.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))])
        t1 = time.perf_counter()
        issued_at = w.now()
        # Fewer free places than a batch: one batch, written after the rule
        # anyway, so no second connection and no thread (a freed place's run).
        apart = w.pg and sum(free.values()) > BATCH
        with _Referrals(self, w, run_id, pool_id, policy, issued_at, timings, apart) as refer:
            consumed, allocations = self._allocate(w, free, on, policy, refer)
            timings["allocate"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            # Made while the last batch is written.
            record = runs.record_of(consumed, allocations)
            issued = refer.done()
        if allocations:
            # Last, so that the children's rows change after every read of
            # the run (a changed row is no longer all-visible: index-only
            # reads of the later groups would then read the table too).
            settle = allocation_pg.settle if w.pg else generic.settle
            settle(w.s, issued_at, [x.child_id for x in allocations],
                   Counter(pool_id[(x.place, x.for_category)] for x in allocations), timings)
        # Everyone behind a referred child in any pool it waited in moves up.
        prefs = {a.child_id: a.preferences for a in consumed}
        w.positions_moved({(x.place.cohort, k) for x in allocations for k in prefs[x.child_id]})
        timings["write"] = time.perf_counter() - t2

        t3 = time.perf_counter()
        runs.finish(w.s, run_id, record, at=w.now())
        marks.requests_done(w.s, requests, now, run_id)
        w.audit(ALLOCATOR, "allocation.run", f"run:{run_id}", {
            "allocated": len(allocations), "candidates": len(consumed), "requests": len(requests),
            "on": on.isoformat()})
        timings["record"] = time.perf_counter() - t3
        timings["total"] = time.perf_counter() - t0
        log.info("allocation.done", run_id=run_id, allocated=len(allocations), candidates=len(consumed),
                 seconds=round(timings["total"], 3))
        return RunResult(run_id, issued, len(consumed), timings)

    def _allocate(self, w: UnitOfWork, free: FreePlaces, on: date, policy: Policy,
                  refer: "_Referrals") -> tuple[list[Applicant], list[Allocation]]:
        """Serial dictatorship per (cohort, language) group over the waiting
        children streamed in rank order; each allocation is handed to `refer`
        as it is made. Returns the children read and the allocations."""
        ranked = allocation_pg.ranked if w.pg else generic.ranked
        bound = latest_eligible_birth_date(on, policy)
        consumed: list[Applicant] = []
        allocations: list[Allocation] = []
        with self._reading(w, refer.apart) as s:
            for cohort, language in groups_of(free):
                group = {k: n for k, n in free.items() if k[0].cohort == cohort and k[0].language == language}
                stream = ranked(s, cohort, language, bound, policy, consumed, group, allocations)
                try:
                    # One by one: the stream reads `allocations` to know which
                    # places are left when it fetches its next chunk.
                    for x in allocate_ranked(stream, group, on, policy):
                        allocations.append(x)
                        refer.add(x)
                finally:
                    stream.close()
        return consumed, allocations

    @contextmanager
    def _reading(self, w: UnitOfWork, apart: bool) -> Iterator[Session]:
        """Where the run reads the waiting children. `apart` (PostgreSQL) a
        connection of its own, so that the run's connection can write the
        referrals already made meanwhile (_Referrals). Nothing is lost by it:
        each read is a statement at READ COMMITTED on either connection, and
        the run changes no child's row before its last read (settle); a child
        changed by someone else since it was read makes that write refuse it
        (StaleRead), as before."""
        if not apart:
            yield w.s
            return
        with self.ctx.sessions() as s:
            yield s

    def _refer(self, w: UnitOfWork, run_id: int, batch: list[Allocation], seq: int, pool_id: dict[Pool, int],
               policy: Policy, now: datetime, timings: dict) -> list[Issued]:
        """The referrals of a batch of the run's allocations (`seq`: the
        first one's number in the run), issued `now`,
        their audit rows with the inputs that decided each, and their
        referral.issued facts (announced: the workflow started afterwards
        records none)."""
        deadlines = self._deadlines(now, policy)
        rows = []
        for x in batch:
            cat = x.inputs["category"]
            needs = policy.category(cat).needs_confirmation
            place = x.place
            rows.append((x.child_id, pool_id[(place, x.for_category)], place.kindergarten, place.cohort,
                         place.language, x.for_category or OPEN_POOL, cat, needs, x.preference_index, "live",
                         rules.first_state(needs).value, run_id, now, deadlines[needs], True))
        write = allocation_pg.write if w.pg else generic.write
        ref_ids = write(w.s, rows, timings)
        t = time.perf_counter()
        runs.record_allocations(w.s, [
            (run_id, seq + i, rid, x.child_id, x.place.kindergarten, x.place.cohort, x.place.language,
             x.for_category, x.preference_index, x.inputs) for i, (x, rid) in enumerate(zip(batch, ref_ids))])
        _add(timings, "write_audit", time.perf_counter() - t)
        t = time.perf_counter()
        # Each referral's referral.issued.v1 and its audit row, as the
        # ReferralWorkflow's first step wrote them before (record_referral,
        # "issued"): the parent is told, the caseworker gets the case and the
        # cabinet shows the referral once the run commits, not once Temporal
        # has started and run ten thousand workflows.
        announce = allocation_pg.announce if w.pg else generic.announce
        announce(w.s, now, ref_ids, {needs: at.isoformat() for needs, at in deadlines.items()}, principal(ISSUER))
        _add(timings, "write_issued", time.perf_counter() - t)
        return [Issued(rid, x.child_id, x.place, x.for_category, x.preference_index)
                for x, rid in zip(batch, ref_ids)]

    def _deadlines(self, now: datetime, policy: Policy) -> dict[bool, datetime]:
        """The end of a new referral's first window, with and without a
        privilege to confirm (workflows/rules.py)."""
        cal = kcal.calendar(policy.country)
        return {needs: utc(rules.first_deadline(cal, now, needs, policy)) for needs in (True, False)}


def _add(timings: dict, phase: str, seconds: float) -> None:
    timings[phase] = timings.get(phase, 0.0) + seconds


class _Referrals:
    """The run's allocations written in batches (Allocator._refer) as the
    rule makes them, in the run's transaction. `apart` (PostgreSQL, more free
    places than a batch) each full batch is written by a thread of its own on
    the run's connection while the rule goes on reading on another
    (Allocator._reading); otherwise (SQLite, one connection; a small run)
    every batch is written once the rule is done. Either way the
    run commits or rolls back as one: `done` waits for every batch and raises
    the first failure (a child changed since it was read, a place taken by a
    concurrent run: the run is retried), and leaving the block waits for the
    writer before the transaction ends. A batch after a failed one is not
    written."""

    def __init__(self, allocator: "Allocator", w: UnitOfWork, run_id: int, pool_id: dict[Pool, int],
                 policy: Policy, now: datetime, timings: dict, apart: bool):
        self.refer = lambda batch, seq: allocator._refer(w, run_id, batch, seq, pool_id, policy, now, timings)
        self.batch: list[Allocation] = []
        self.written = 0
        self.futures: list[Future] = []
        self.failed = False
        self.apart = apart
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="allocation-writer") if apart else None

    def __enter__(self) -> "_Referrals":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.failed = True
        if self.writer is not None:
            self.writer.shutdown(wait=True)

    def add(self, x: Allocation) -> None:
        self.batch.append(x)
        if self.writer is not None and len(self.batch) >= BATCH:
            self._send()

    def done(self) -> list[Issued]:
        """Every batch written; the referrals issued, in the run's order."""
        self._send()
        issued: list[Issued] = []
        for f in self.futures:
            issued += f.result()
        return issued

    def _send(self) -> None:
        batch, seq = self.batch, self.written
        self.batch, self.written = [], seq + len(batch)
        if not batch:
            return
        if self.writer is None:
            f: Future = Future()
            f.set_result(self.refer(batch, seq))
        else:
            # The trace and the request's log context go with the batch (the
            # facts and audit rows carry them).
            f = self.writer.submit(contextvars.copy_context().run, self._write, batch, seq)
        self.futures.append(f)

    def _write(self, batch: list[Allocation], seq: int) -> list[Issued]:
        if self.failed:
            return []
        try:
            return self.refer(batch, seq)
        except BaseException:
            self.failed = True
            raise
