"""A time-skipping Temporal server for the workflow tests, fake services
registered under the contract names, and a clock that maps real dates
(holidays!) onto the server's time through the workflow's clock_offset."""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from kezek import calendar as kcal
from tests.fakes.activities import stand_in
from workflows import client
from workflows import contracts as c
from workflows.referral import ReferralWorkflow
from workflows.worker import build_worker


@pytest.fixture(scope="session")
def env(temporal_test_env):
    return temporal_test_env


@dataclass
class FakeServices:
    """The queue and notifications services as the workflow sees them."""

    calls: list[tuple[str, c.ActivityCall]] = field(default_factory=list)
    notifications_down: bool = False
    # The queue answers that the child left the queue for school age when
    # its place came back (c.PlaceReturned); otherwise it answers nothing,
    # as the queue did before AGED_OUT_PATCH.
    child_aged_out: bool = False

    def named(self, name: str) -> list:
        return [p for n, p in self.calls if n == name]

    def queue_calls(self) -> list[str]:
        out = []
        for n, p in self.calls:
            if n == c.RECORD_REFERRAL:
                out.append(f"{n}:{p.event}")
            elif n == c.RETURN_PLACE:
                out.append(f"{n}:{p.outcome}")
            elif n != c.NOTIFY_PARENT:
                out.append(n)
        return out

    def notified(self) -> list[str]:
        return [p.kind for p in self.named(c.NOTIFY_PARENT)]

    def activities(self) -> list:
        calls = self.calls
        aged_out = self.child_aged_out

        @activity.defn(name=c.RETURN_PLACE)
        async def return_place(p: c.ReturnPlace) -> c.PlaceReturned | None:
            calls.append((c.RETURN_PLACE, p))
            return c.PlaceReturned(applied=True, aged_out=True) if aged_out else None

        down = self.notifications_down

        @activity.defn(name=c.NOTIFY_PARENT)
        async def notify_parent(p: c.NotifyParent) -> None:
            if down:
                raise ApplicationError("SMS gateway refused", non_retryable=True)
            calls.append((c.NOTIFY_PARENT, p))

        return [return_place, notify_parent, *(stand_in(name, calls) for name in (
            c.RETURN_TO_GENERAL_QUEUE, c.PUT_ON_STOPLIST, c.LIFT_STOPLIST, c.RECORD_ENROLMENT, c.RECORD_REFERRAL))]


@dataclass
class Referral:
    """A running ReferralWorkflow plus the simulated local clock it lives on."""

    env: WorkflowEnvironment
    handle: WorkflowHandle
    offset: timedelta
    cal: kcal.WorkingCalendar
    fakes: FakeServices
    referral_id: str

    def local(self, *args: int) -> datetime:
        return datetime(*args, tzinfo=self.cal.tz)

    async def now(self) -> datetime:
        return self.cal.local(await self.env.get_current_time() + self.offset)

    async def advance_to(self, moment: datetime) -> None:
        left = moment - await self.now()
        if left > timedelta(0):
            await self.env.sleep(left)

    async def act(self, update: str, req: c.Act, at: datetime | None = None) -> c.ActResult:
        if at is not None:
            await self.advance_to(at)
            req = req.model_copy(update={"acted_at": at})
        return await client.act(self.env.client, self.referral_id, update, req)

    async def confirm(self, certificate_issued: date, at: datetime | None = None) -> c.ActResult:
        """A caseworker confirms the privilege on a certificate of that day."""
        return await self.act(c.CONFIRM_PRIVILEGE, c.ConfirmPrivilege(certificate_issued=certificate_issued), at)

    async def refused(self, update: str, req: c.Act, at: datetime | None = None) -> str:
        """The reason an act is refused (fails the test if it is accepted)."""
        before = self.fakes.queue_calls()
        with pytest.raises(client.ReferralRefused) as e:
            await self.act(update, req, at)
        assert self.fakes.queue_calls() == before, "a refused act changed something"
        return e.value.reason

    async def status(self) -> c.ReferralStatus:
        return await self.handle.query(c.STATUS, result_type=c.ReferralStatus)

    async def outcome(self) -> c.ReferralOutcome:
        return await self.handle.result()


@pytest.fixture
async def referral(env):
    """An async factory: `r = await referral(issued=(2027, 3, 1, 10, 0), ...)`."""
    started: list[WorkflowHandle] = []
    async with contextlib.AsyncExitStack() as stack:
        async def start(*, issued: tuple, country: str = "KG", category: str = "general",
                        needs_confirmation: bool = False, notifications_down: bool = False,
                        now: tuple | None = None, child_aged_out: bool = False, **fields) -> Referral:
            fakes = FakeServices(notifications_down=notifications_down, child_aged_out=child_aged_out)
            task_queue = f"referrals-{uuid.uuid4().hex[:10]}"
            await stack.enter_async_context(
                build_worker(env.client, fakes.activities(), task_queue=task_queue))
            cal = kcal.calendar(country)
            issued_at = datetime(*issued, tzinfo=cal.tz)
            # `now`: the clock when the workflow starts (an imported
            # referral was issued earlier, elsewhere); else `issued`.
            offset = (datetime(*now, tzinfo=cal.tz) if now else issued_at) - await env.get_current_time()
            referral_id = uuid.uuid4().hex[:12]
            inp = c.ReferralInput(
                referral_id=referral_id, application_id=f"app-{referral_id}", kindergarten="sun",
                cohort=2024, language="ru", category=category, needs_confirmation=needs_confirmation,
                issued_at=issued_at, country=country, clock_offset=offset, **fields)
            handle = await env.client.start_workflow(
                ReferralWorkflow.run, inp, id=c.workflow_id(referral_id), task_queue=task_queue)
            started.append(handle)
            r = Referral(env, handle, offset, cal, fakes, referral_id)
            if fields.get("resume") is not None or fields.get("announced"):
                # A resumed or announced referral records nothing at start: wait until it runs.
                await r.status()
                return r
            # The queue has recorded the issued referral.
            for _ in range(500):
                if fakes.named(c.RECORD_REFERRAL):
                    break
                await asyncio.sleep(0.01)
            return r

        yield start
        # Run every workflow to its end while its worker is still there: one
        # left waiting would get a task when a later test skips time, with no
        # worker to run it, and the server would stop skipping.
        for handle in started:
            with contextlib.suppress(Exception):
                await handle.result()
