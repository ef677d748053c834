"""The queue's side of the ReferralWorkflow (workflows/contracts.py), and the
starter that launches one workflow per referral the allocation issued.

Each activity applies its effect once per idempotency key, in the same
transaction as the effect and its outbox rows (usecases/referral_effects.py). A
refusal by the rules is a non-retryable QueueRefused; anything else (the
database away for a moment) is retried by Temporal.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from kezek import connections
from kezek.logging import get_logger
from kezek.pacing import LONGEST_IDLE, IdlePause
from services.queue.domain.refusals import Refused
from services.queue.usecases import Queue
from services.queue.usecases.referral_effects import ReferralEffects
from workflows import contracts as c

log = get_logger(__name__)


async def _apply(effect: Callable, call, **details) -> bool:
    """Runs a blocking use case off the event loop, with what every call
    carries (idempotency key, referral, application, moment, actor) and its
    `details`; a refusal is final."""
    try:
        return await asyncio.to_thread(effect, key=call.idempotency_key, referral_id=call.referral_id,
                                       application_id=call.application_id, at=call.at, actor=call.actor, **details)
    except Refused as exc:
        raise ApplicationError(exc.message, type=c.QUEUE_REFUSED, non_retryable=True) from exc


class QueueActivities:
    """The activities, bound to the queue's referral effects. Async, with the
    blocking database work in a thread, so the worker needs no activity executor."""

    def __init__(self, queue: Queue):
        self.effects: ReferralEffects = queue.referrals

    def all(self) -> list[Callable]:
        return [self.return_place, self.return_to_general_queue, self.put_on_stoplist, self.lift_stoplist,
                self.record_enrolment, self.record_referral]

    @activity.defn(name=c.RETURN_PLACE)
    async def return_place(self, call: c.ReturnPlace) -> c.PlaceReturned:
        applied = await _apply(self.effects.return_place, call, outcome=call.outcome,
                               drop_preference=call.drop_preference, reason=call.reason)
        # Read after the commit, so a retry of an applied call answers alike.
        status = await asyncio.to_thread(self.effects.entry_status, call.application_id)
        return c.PlaceReturned(applied=applied, aged_out=status == "aged_out")

    @activity.defn(name=c.RETURN_TO_GENERAL_QUEUE)
    async def return_to_general_queue(self, call: c.ReturnToGeneralQueue) -> bool:
        return await _apply(self.effects.return_to_general_queue, call, from_category=call.from_category,
                            reason=call.reason)

    @activity.defn(name=c.PUT_ON_STOPLIST)
    async def put_on_stoplist(self, call: c.PutOnStoplist) -> bool:
        return await _apply(self.effects.put_on_stoplist, call, until=call.until)

    @activity.defn(name=c.LIFT_STOPLIST)
    async def lift_stoplist(self, call: c.LiftStoplist) -> bool:
        return await _apply(self.effects.lift_stoplist, call)

    @activity.defn(name=c.RECORD_ENROLMENT)
    async def record_enrolment(self, call: c.RecordEnrolmentCall) -> bool:
        return await _apply(self.effects.record_enrolment, call)

    @activity.defn(name=c.RECORD_REFERRAL)
    async def record_referral(self, call: c.RecordReferral) -> bool:
        return await _apply(self.effects.record_referral, call, event=call.event, state=call.state.value,
                            deadline=call.deadline, needs_confirmation=call.needs_confirmation, reason=call.reason)


def referral_input(pending: dict) -> c.ReferralInput:
    return c.ReferralInput(
        referral_id=pending["referral_id"], application_id=pending["application_id"],
        kindergarten=pending["kindergarten"], cohort=pending["cohort"], language=pending["language"],
        category=pending["category"], for_category=pending["for_category"],
        needs_confirmation=pending["needs_confirmation"], issued_at=pending["issued_at"],
        country=pending["country"], policy=c.ReferralPolicy(**pending["policy"]), parent_id=pending["parent_id"],
        resume=c.ResumedReferral(**pending["resume"]) if pending.get("resume") else None,
        announced=pending.get("announced", False))


class WorkflowStarter:
    """Starts the ReferralWorkflow of every referral that has none yet.

    The allocation commits its referrals first; this starts their workflows
    afterwards, `concurrency` at a time (each start is a round trip to
    Temporal: one after another, a national run's tens of thousands would
    take minutes), and marks a batch started in one transaction. A crash in
    between starts them again: the workflow id `referral-<id>` makes the
    second start a no-op, also when the first workflow has ended meanwhile
    (REJECT_DUPLICATE: the default would start the referral a second run).
    Several starters (several `kezek consume` of the queue) may take the
    same referrals; the second start is that no-op."""

    def __init__(self, queue: Queue, *, address: str, namespace: str = "default",
                 task_queue: str = c.TASK_QUEUE, batch: int = 500, concurrency: int = 50,
                 idle_sleep: float = 0.25, idle_max: float = LONGEST_IDLE):
        self.effects = queue.referrals
        self.address = address
        self.namespace = namespace
        self.task_queue = task_queue
        self.batch = batch
        self.concurrency = concurrency
        # With nothing to start, the next look after a pause from idle_sleep
        # doubling up to idle_max (kezek/pacing.py).
        self.idle_sleep = idle_sleep
        self.idle_max = idle_max
        self.__name__ = "queue-workflow-starter"

    async def start_pending(self, client) -> int:
        from temporalio.common import WorkflowIDReusePolicy
        from temporalio.exceptions import WorkflowAlreadyStartedError

        pending = await asyncio.to_thread(self.effects.unstarted, self.batch)
        gate = asyncio.Semaphore(self.concurrency)

        async def start(p: dict) -> str | None:
            wid = c.workflow_id(p["referral_id"])
            async with gate:
                try:
                    await client.start_workflow(c.WORKFLOW_TYPE, referral_input(p), id=wid,
                                                task_queue=self.task_queue, execution_timeout=timedelta(days=400),
                                                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
                    log.info("referral.workflow_started", workflow_id=wid)
                except WorkflowAlreadyStartedError:
                    log.info("referral.workflow_already_started", workflow_id=wid)
            return p["referral_id"]

        outcomes = await asyncio.gather(*(start(p) for p in pending), return_exceptions=True)
        started = [o for o in outcomes if isinstance(o, str)]
        if started:
            await asyncio.to_thread(self.effects.mark_started_many, started)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:       # Temporal away for a moment: the rest wait for the next round
            raise failed[0]
        return len(pending)

    async def _run(self, stop: threading.Event) -> None:
        from temporalio.client import Client
        from temporalio.contrib.pydantic import pydantic_data_converter

        client = None
        idle = IdlePause(self.idle_sleep, self.idle_max)
        while not stop.is_set():
            try:
                if client is None:
                    client = await Client.connect(self.address, namespace=self.namespace,
                                                  data_converter=pydantic_data_converter,
                                                  **connections.temporal())
                if await self.start_pending(client):
                    idle.found()
                else:
                    await asyncio.sleep(idle.next())
            except Exception as exc:  # Temporal or the database away for a moment
                log.warning("referral.workflow_start_failed", error=repr(exc))
                await asyncio.sleep(1)

    def __call__(self, stop: threading.Event) -> None:
        asyncio.run(self._run(stop))


def build_activities(settings) -> list[Callable]:
    from services.queue.runtime import build_queue

    return QueueActivities(build_queue(settings)).all()
