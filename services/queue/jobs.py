"""The queue's background loops (run by `kezek consume`): the allocator,
which allocates as soon as something asked for it and keeps the calendar's
triggers (scheduled places, ended stop-lists, local midnight: children who
turn 2 become eligible, children who reach school age leave the queue), and
the starter of referral workflows."""
from __future__ import annotations

import threading
import time

from kezek.logging import get_logger
from kezek.metrics import ALLOCATION_REFERRALS, ALLOCATION_SECONDS, CALENDAR_TRIGGER_ERRORS, Every
from kezek.pacing import LONGEST_IDLE, IdlePause
from services.queue.usecases import Queue

log = get_logger(__name__)


class Allocator:
    """Nobody allocates by hand: this loop does, whenever a change asked for
    it (allocation_requests): at once when woken in the same process, else
    within `poll` seconds after a run, the pause doubling up to `poll_max`
    while nothing is asked for (kezek/pacing.py). It keeps the calendar
    every `calendar_every` seconds: its triggers are minutes and days apart,
    and each is safe to skip for a tick (`keep_calendar`); four transactions
    every quarter second were a third of the queue's consumer process's CPU
    at rest."""

    def __init__(self, queue: Queue, *, poll: float = 0.25, poll_max: float = LONGEST_IDLE,
                 calendar_every: float = 2.0):
        self.queue = queue
        self.poll = poll
        self.poll_max = poll_max
        self.calendar = Every(calendar_every)
        self.wake = threading.Event()
        self.__name__ = "queue-allocator"

    def run_once(self, *, calendar: bool = True) -> int:
        if calendar:
            self.keep_calendar()
        started = time.perf_counter()
        run = self.queue.allocation.process_requests()
        if run is None:
            return 0
        ALLOCATION_SECONDS.observe(time.perf_counter() - started)
        ALLOCATION_REFERRALS.inc(len(run.issued))
        return len(run.issued)

    def keep_calendar(self) -> None:
        """The calendar's triggers, before every run. The day's request is
        asked for on every tick and written once a local day (its dedupe
        key), so a loop started mid-day, or after the clock jumped past
        midnight, asks for the day it finds: a child who turns 2 gets the
        place that waits for him by the first run of the day, though no
        change asked for one. A run that comes before the day's request (the
        day turned between this and the run) reads every pool all the same,
        being the first of its day (Allocator._scope).

        A trigger that fails is logged and counted, and the others and the
        run go on: one scheduled place the database refuses must not stop
        every allocation of the country. Each is safe to skip for a tick: a
        place not yet published is not offered, a child whose stop-list
        ended is also brought back by its referral's workflow, the run
        passes over a child of school age not yet aged out, and the day's
        request is asked for again on the next tick."""
        q = self.queue
        for name, trigger in (("publish_due", q.places.publish_due),
                              ("lift_due_stoplists", q.referrals.lift_due_stoplists),
                              ("ageing", q.ageing.daily), ("request_daily", q.allocation.request_daily)):
            try:
                trigger()
            except Exception as exc:
                CALENDAR_TRIGGER_ERRORS.labels(trigger=name).inc()
                log.error("queue.calendar_trigger_failed", trigger=name, error=repr(exc)[:300])

    def __call__(self, stop: threading.Event) -> None:
        idle = IdlePause(self.poll, self.poll_max)
        while not stop.is_set():
            try:
                if self.run_once(calendar=self.calendar.due()):
                    idle.found()
            except Exception as exc:  # the database may be away for a moment
                log.warning("queue.allocator_failed", error=repr(exc))
                stop.wait(1)
            if self.wake.wait(idle.next()):
                idle.found()
            self.wake.clear()


def build_jobs(settings) -> list:
    from kezek.retention import daily_loop
    from services.queue.activities import WorkflowStarter
    from services.queue.retention import build_retention
    from services.queue.runtime import build_queue

    allocator = Allocator(build_queue(settings))
    allocator.queue.wake_with(allocator.wake.set)
    starter = WorkflowStarter(build_queue(settings), address=settings.temporal_address,
                              namespace=settings.temporal_namespace, task_queue=settings.temporal_task_queue)
    return [allocator, starter, daily_loop(build_retention(settings))]
