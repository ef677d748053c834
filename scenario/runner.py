"""Runs a scenario: the real allocation (services/queue/domain/) and the
real ReferralWorkflow on Temporal's time-skipping test server.

Time. Scenario time is local time of the country. The test server starts at
today's date and can only move forward, so each workflow gets
`clock_offset = scenario start - server time at the start` in its input
(zero in production) and reads business time as workflow.now() + offset.
The runner moves the server's clock from moment to moment with env.sleep;
the moments are the steps, every day's 00:00 (allocation: birthdays), and
the deadlines and stop-list ends that the workflows report.

Order at one moment (SCENARIOS.md): windows that end expire, then stop-lists
that end are lifted, then (at 00:00) the children who reach school age leave
the queue, then allocation, then each step in file order followed by
allocation. The workflows run concurrently; their output lines are
collected per cause and printed in that order.
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from kezek import calendar as kcal
from kezek.infra.temporal import test_server_path
from scenario import ageing
from scenario.model import Scenario, Step
from scenario.world import Cause, Child, Referral, World, line_rank, local_iso
from services.queue import domain
from services.queue.domain.placement import check_can_leave
from services.queue.domain.refusals import Refused
from workflows import client as wf_client
from workflows import contracts as c
from workflows.worker import build_worker, sandbox_runner

# The workflow sandbox: "full" as the production worker runs it, "light"
# (every module shared with the host, the calls that break determinism still
# checked), "off". Off by default: the sandbox guards the code against
# nondeterministic calls, which the workflow tests and the production worker
# already run it for; here it would double the CPU of a year's run. The
# workflow code and Temporal's replay checks are the same in every mode.
SANDBOXES = ("full", "light", "off")
# How long one moment may take before the run is declared stuck.
MOMENT_TIMEOUT = 120.0


@dataclass
class RunStats:
    moments: int = 0
    referrals: int = 0
    updates: int = 0
    notifications: int = 0
    lines: int = 0
    seconds: float = 0.0
    # Where the time went (seconds waiting on Temporal).
    in_steps: float = 0.0
    in_issuing: float = 0.0
    in_timers: float = 0.0
    in_clock: float = 0.0


_RUNTIME: Runtime | None = None


def _quiet_runtime() -> Runtime:
    """The SDK core warns on standard error that the test server is not a
    full server (heartbeat details); a scenario's stderr is for its own
    messages, so only errors get through."""
    global _RUNTIME
    if _RUNTIME is None:
        _RUNTIME = Runtime(telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR")),
            metrics=None))
    return _RUNTIME


# Steps that neither free a place nor change who waits: the allocation after
# each of them has nothing new to do, so a run of them at one moment, each
# for a different child, may go to the workflows at once (their lines are
# still printed in file order).
_INDEPENDENT = frozenset({"enrol", "confirm_privilege", "extend_referral"})


def _runs(steps: list[Step]) -> list[list[Step]]:
    runs: list[list[Step]] = []
    for step in steps:
        last = runs[-1] if runs else None
        if (last is not None and step.do in _INDEPENDENT and last[-1].do in _INDEPENDENT
                and step.child not in {s.child for s in last}):
            last.append(step)
        else:
            runs.append([step])
    return runs


class Runner:
    def __init__(self, scenario: Scenario, emit: Callable[[dict], None], *, sandbox: str = "off") -> None:
        self.s = scenario
        self.cal = kcal.calendar(scenario.country)
        self.world = World(scenario, self.cal)
        self.emit = emit
        if sandbox not in SANDBOXES:
            raise ValueError(f"sandbox must be one of {', '.join(SANDBOXES)}")
        self.sandbox = sandbox
        self.stats = RunStats()
        self.env: WorkflowEnvironment | None = None
        self.offset = timedelta(0)
        self._advanced_to: datetime | None = None
        self._buffer: list[Cause] = []
        self._issuing: dict[str, asyncio.Future] = {}
        self.task_queue = f"scenario-{uuid.uuid4().hex[:8]}"
        self.policy = c.ReferralPolicy(
            confirm_working_days=scenario.policy.confirm_working_days,
            enrol_working_days=scenario.policy.enrol_working_days,
            certificate_valid_days=scenario.policy.certificate_valid_days,
            extension_days=scenario.policy.extension_days,
            stoplist_days=scenario.policy.stoplist_days,
            # Reminders are messages, not facts: a scenario prints none, so
            # its workflows need not wake up for them.
            reminder_working_days=0)

    def _workflow_runner(self):
        if self.sandbox == "off":
            return UnsandboxedWorkflowRunner()
        return sandbox_runner(passthrough_all=self.sandbox == "light")

    def local(self, naive: datetime) -> datetime:
        return naive.replace(tzinfo=self.cal.tz)

    # -------------------------------------------------------------- run

    async def run(self) -> dict:
        began = time.perf_counter()
        self.env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(test_server_path()), data_converter=pydantic_data_converter,
            runtime=_quiet_runtime())
        try:
            worker = build_worker(
                self.env.client, self.world.activities(), task_queue=self.task_queue,
                workflow_runner=self._workflow_runner(),
                max_cached_workflows=100_000, max_concurrent_workflow_tasks=200,
                max_concurrent_activities=400, max_concurrent_workflow_task_polls=20,
                max_concurrent_activity_task_polls=20)
            async with worker:
                start = self.local(self.s.start)
                self.offset = start - await self.env.get_current_time()
                await self.world.set_now(start)
                await self._loop(start, self.local(self.s.until))
                final = self._final()
        finally:
            await self.env.shutdown()
        self.stats.notifications = self.world.notifications
        self.stats.seconds = time.perf_counter() - began
        return final

    async def _loop(self, start: datetime, until: datetime) -> None:
        steps = list(self.s.steps)
        next_step = 0
        day = start.date() if start == self.cal.start_of_day(start.date()) else start.date() + timedelta(days=1)
        while True:
            candidates = [self.cal.start_of_day(day)]
            if next_step < len(steps):
                candidates.append(self.local(steps[next_step].at))
            timers = self._timers()
            if timers:
                candidates.append(min(timers))
            moment = min(candidates)
            if moment > until:
                break
            todays: list[Step] = []
            while next_step < len(steps) and self.local(steps[next_step].at) == moment:
                todays.append(steps[next_step])
                next_step += 1
            day_start = moment == self.cal.start_of_day(day)
            if day_start:
                day += timedelta(days=1)
            await asyncio.wait_for(self._moment(moment, todays, day_start), MOMENT_TIMEOUT)
            self.stats.moments += 1

    def _timers(self) -> list[datetime]:
        out = []
        for ref in self.world.referrals.values():
            if ref.live and ref.deadline is not None:
                out.append(ref.deadline)
            elif ref.stoplist_until is not None:
                out.append(ref.stoplist_until)
        return out

    async def _moment(self, moment: datetime, steps: list[Step], day_start: bool) -> None:
        expiring = sorted((r for r in self.world.referrals.values() if r.live and r.deadline == moment),
                          key=lambda r: r.seq)
        lifting = sorted((r for r in self.world.referrals.values()
                          if not r.live and r.stoplist_until == moment), key=lambda r: r.seq)
        if not (expiring or lifting or steps):
            if day_start:
                self._age_out(moment)
                await self._allocate(moment, None)  # birthdays; moves the clock only if it issues
                await self._settle()
            return
        # Causes and expectations first: a deadline that fired a little early
        # (the server's clock runs in real time while the runner works) has
        # its effects held until the runner's clock reaches it.
        groups = []
        # An expiry is done when both of its effects are (in either order).
        for group, facts in ((expiring, ("paused", "place.returned")), (lifting, ("resumed",))):
            causes, waits = [], []
            for ref in group:
                cause = Cause(step=None)
                self.world.attribute(ref.id, cause)
                causes.append(cause)
                waits.extend(self.world.expect(ref.id, fact) for fact in facts)
            groups.append((causes, waits))
        await self._advance(moment)
        # 1. windows that end expire; 2. stop-lists that end are lifted.
        for causes, waits in groups:
            if waits:
                t = time.perf_counter()
                await asyncio.gather(*waits)
                self.stats.in_timers += time.perf_counter() - t
            for cause in causes:
                self._flush(cause)
        if day_start:
            self._age_out(moment)
        if expiring or lifting or day_start:
            await self._allocate(moment, None)
        # 3. the steps, each followed by allocation.
        for run in _runs(steps):
            causes = [Cause(step=step.index) for step in run]
            t = time.perf_counter()
            if len(run) == 1:
                await self._step(run[0], moment, causes[0])
            else:
                await asyncio.gather(*(self._step(st, moment, cause) for st, cause in zip(run, causes)))
            self.stats.in_steps += time.perf_counter() - t
            for cause in causes:
                self._flush(cause)
            await self._allocate(moment, run[-1].index)
        await self._settle()

    async def _advance(self, moment: datetime) -> None:
        assert self.env is not None
        if self._advanced_to == moment:
            return
        self._advanced_to = moment
        t = time.perf_counter()
        await self.world.set_now(moment)
        left = (moment - self.offset) - await self.env.get_current_time()
        if left > timedelta(0):
            await self.env.sleep(left)
        self.stats.in_clock += time.perf_counter() - t

    def _flush(self, cause: Cause) -> None:
        """Queues a cause's lines for printing, in order of causes."""
        self._buffer.append(cause)

    async def _settle(self) -> None:
        """Waits for the referrals issued at this moment to be recorded (their
        workflows start concurrently), then prints the moment's lines."""
        if self._issuing:
            t = time.perf_counter()
            await asyncio.gather(*self._issuing.values())
            self.stats.in_issuing += time.perf_counter() - t
            self._issuing.clear()
        for cause in self._buffer:
            for line in sorted(cause.lines, key=line_rank):
                self.emit(line)
                self.stats.lines += 1
            cause.lines.clear()
        self._buffer.clear()

    async def _issued(self, ref: Referral) -> None:
        """Before an act on a referral issued at this moment: its workflow has
        started and recorded it (so its lines stay with the allocation)."""
        task = self._issuing.get(ref.id)
        if task is not None:
            await task

    def _age_out(self, moment: datetime) -> None:
        """00:00: the children who reach school age today leave the queue
        (after the moment's expiries and stop-lists, before its allocation)."""
        cause = Cause(step=None)
        if ageing.age_out_due(self.world, moment, cause):
            self._flush(cause)

    # ------------------------------------------------------- allocation

    async def _allocate(self, moment: datetime, step: int | None) -> None:
        free = self.world.free_places()
        if not free:
            return
        # Only children who list a kindergarten with a free place of their
        # cohort and language can take one; leaving the others out changes
        # nobody's result and spares ranking the whole queue at every moment.
        waiting = [ch.applicant() for ch in self.world.candidates(free)]
        if not waiting:
            return
        allocations = domain.allocate(waiting, free, moment.date(), self.s.policy)
        if not allocations:
            return
        await self._advance(moment)
        # The places are held here and now, so the next step's allocation
        # sees them taken; the workflows start in the background.
        for a in allocations:
            child = self.world.children[a.child_id]
            ref = self.world.hold(child, a.place, a.for_category, moment)
            cause = Cause(step=step)
            self.world.attribute(ref.id, cause)
            self._flush(cause)
            recorded = self.world.expect(ref.id, "referral.issued")
            self._issuing[ref.id] = asyncio.ensure_future(self._issue(ref, child, moment, recorded))
        self.stats.referrals += len(allocations)

    async def _issue(self, ref: Referral, child: Child, moment: datetime, recorded: asyncio.Future) -> None:
        assert self.env is not None
        category = self.s.policy.category(child.category)
        inp = c.ReferralInput(
            referral_id=ref.id, application_id=child.alias, kindergarten=ref.place.kindergarten,
            cohort=ref.place.cohort, language=ref.place.language, category=child.category,
            for_category=ref.for_category, needs_confirmation=category.needs_confirmation,
            issued_at=moment, country=self.s.country, policy=self.policy, clock_offset=self.offset)
        await wf_client.issue(self.env.client, inp, task_queue=self.task_queue)
        await recorded

    # ------------------------------------------------------------ steps

    async def _step(self, step: Step, at: datetime, cause: Cause) -> None:
        w = self.world
        child = w.children.get(step.child) if step.child else None

        def refuse(reason: str) -> None:
            fields = {}
            if child is not None:
                fields["child"] = child.alias
            if step.kindergarten is not None:
                fields.update(kindergarten=step.kindergarten, cohort=step.cohort, language=step.language)
            w.line(cause, at, "step.refused", reason=reason, **fields)

        if step.do == "publish_places":
            key = domain.PlaceKey(step.kindergarten, step.cohort, step.language)
            w.place_keys.add(key)
            w.free[(key, step.for_category)] += step.places
            return
        if step.do == "withdraw_places":
            key = domain.PlaceKey(step.kindergarten, step.cohort, step.language)
            pool = (key, step.for_category)
            free = w.free.get(pool, 0)
            if step.places > free:
                what = f"reserved for {step.for_category}" if step.for_category else "open"
                refuse(f"only {free} free {what} place(s) of {key} can be withdrawn, not {step.places}; "
                       f"held and taken places stay")
                return
            w.free[pool] -= step.places
            return
        assert child is not None
        if child.status == ageing.AGED_OUT and step.do in ("apply", "remove_from_queue"):
            refuse(f"{child.alias} has reached school age and left the queue")
            return
        if step.do == "leave":
            try:
                check_can_leave(child.status)
            except Refused as exc:
                refuse(exc.message)
                return
            w.leave(child, at, cause)
            return
        if step.do == "apply":
            if child.status in ("absent", "removed", "left"):
                child.status, child.queue_date = "queued", at
                child.category, child.preferences = child.spec.category, list(child.spec.preferences)
                child.kindergarten = None
                child.changed()
                w.line(cause, at, "application.queued", child=child.alias)
            elif child.status == "enrolled":
                refuse(f"{child.alias} is already enrolled")
            else:
                refuse(f"{child.alias} is already in the queue (PIN {child.spec.pin})")
            return
        if step.do == "remove_from_queue":
            if child.status in ("absent", "removed", "left"):
                refuse(f"{child.alias} is not in the queue")
                return
            if child.status == "enrolled":
                refuse(f"{child.alias} is enrolled and no longer in the queue")
                return
            if child.status == "referred" and child.referral is not None:
                # Leaving the queue gives the held place up at once.
                await self._issued(child.referral)
                w.attribute(child.referral.id, cause)
                try:
                    await self._act(child.referral, c.CANCEL, c.CancelReferral(
                        acted_at=at, actor="parent", drop_preference=False, reason="removed from the queue"))
                except wf_client.ReferralRefused as e:
                    refuse(e.reason)
                    return
            child.status, child.kindergarten = "removed", None
            w.line(cause, at, "application.removed", child=child.alias)
            return
        # Acts on the child's referral, decided by its workflow.
        ref = child.referral
        if ref is None:
            refuse(f"{child.alias} has no referral")
            return
        await self._issued(ref)
        w.attribute(ref.id, cause)
        if step.do == "confirm_privilege":
            update, req = c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(
                acted_at=at, actor="caseworker", certificate_issued=step.certificate_issued)
        elif step.do == "reject_privilege":
            update, req = c.REJECT_PRIVILEGE, c.RejectPrivilege(acted_at=at, actor="caseworker",
                                                                reason=step.reason or "")
        elif step.do == "extend_referral":
            update, req = c.EXTEND, c.ExtendReferral(acted_at=at, actor="parent")
        elif step.do == "cancel_referral":
            update, req = c.CANCEL, c.CancelReferral(acted_at=at, actor="parent")
        elif step.do == "enrol":
            update, req = c.ENROL, c.RecordEnrolment(acted_at=at, actor="kindergarten")
        else:  # pragma: no cover - the model knows every kind
            raise ValueError(step.do)
        try:
            await self._act(ref, update, req)
        except wf_client.ReferralRefused as e:
            refuse(e.reason)

    async def _act(self, ref: Referral, update: str, req: c.Act) -> c.ActResult:
        assert self.env is not None
        self.stats.updates += 1
        return await wf_client.act(self.env.client, ref.id, update, req)

    # ------------------------------------------------------------ final

    def _final(self) -> dict:
        w = self.world
        waiting = [ch.applicant() for ch in w.waiting()]
        children = {}
        for alias, ch in w.children.items():
            status = ch.status if ch.status != "absent" else "removed"
            position = None
            if ch.status == "queued" and ch.preferences:
                position = domain.position(alias, waiting, self.s.policy)
            children[alias] = {"status": status,
                               "kindergarten": ch.kindergarten if ch.status in ("referred", "enrolled") else None,
                               "position": position}
        keys = set(w.place_keys) | {k for k, _ in w.free} | set(w.held) | set(w.enrolled)
        places = {}
        for key in sorted(keys):
            free = sum(n for (k, _), n in w.free.items() if k == key)
            places[str(key)] = {"free": free, "held": w.held[key], "enrolled": w.enrolled[key]}
        return {"event": "final", "at": local_iso(self.local(self.s.until), self.cal), "children": children,
                "places": places}
