"""ReferralWorkflow: one durable workflow per referral (DOMAIN.md section 4).

The rules (the windows, the extension, certificate validity, the stop-list,
which act is allowed in which state, the state diagram) are in
workflows/rules.py; this class keeps the referral's timers, its updates and
the activities that carry out its effects, and asks the rules at each step:

    issued -> awaiting_confirmation | awaiting_enrolment -> enrolled
              cancel, reject, window ends (paused -> resumed): see rules.py
    (and a reminder to the parent on the morning two working days before a deadline)

Parents, caseworkers and kindergartens act through updates. A validator
refuses what the rules forbid with the reason the caller sees, leaving no
trace in the history. Acts take turns: one that arrives while another (or an
expiry) is under way waits for it, is checked again, and is refused then if
the first one closed the referral. Window lengths come from the policy in
the input; deadlines from kezek.calendar (pure, deterministic). Time is
`workflow.now()` plus the input's `clock_offset` (zero in production).

Calendar data (a decree) changes deadlines computed after workers load it.
A running workflow recomputes its deadlines when it is replayed (a worker
restart), so a decree that moves a running window takes effect then: a timer
that fires early is waited out again, a late one expires the referral late.

A referral imported from a previous system (`ReferralInput.resume`) starts
in its recorded state with its recorded deadline and extension, sends no
"issued" message, and from then on is like any other.

A referral the allocation issued is announced by the allocation itself
(issue 15): its transaction writes the referral.issued fact, from which the
parent is told, the caseworker's case opened and the cabinet updated, and
its audit row; the workflow, started afterwards with
`ReferralInput.announced`, goes straight to its first window. A referral
issued before that (`announced` false) is recorded by its workflow's first
step, as it always was. An act that reaches a referral whose workflow is not
started yet gets `ReferralNotStarted` (workflows/client.py).

Changing this code once it runs in production: every change that alters the
commands a running workflow issues (an activity added, removed or reordered,
a timer added) goes behind `if workflow.patched("<change-id>"):` so that
histories recorded before the change replay down the old path; record a new
history into workflows/histories/ and keep the old ones, which
tests/workflows/test_replay.py replays. Once no workflow that started before
the change is open (at most a window plus the stop-list plus an extension,
about two months), replace `patched` with `workflow.deprecate_patch`, and a
release later drop the old branch. Example: the deadline reminder
(REMINDER_PATCH): histories v1-* were recorded before it, v2-* after; the
expiry of a child past school age (AGED_OUT_PATCH): v3-* after; the
queue's calls local and no activity for the kinds told by facts
(LEAN_PATCH): v4-* after.
"""
from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from kezek import calendar as kcal
    from workflows import contracts as c
    from workflows import rules
    from workflows.rules import LIVE_STATES, Act, ReferralState as S

# The queue's effects must happen: retry until they do; a refusal (a
# non-retryable QueueRefused) fails the act instead.
QUEUE_CALL = dict(
    start_to_close_timeout=timedelta(seconds=30),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=5),
                             non_retryable_error_types=[c.QUEUE_REFUSED]),
)
# A message that cannot be delivered must not block the referral (nor its
# completion, which waits for the messages it started).
NOTIFY_CALL = dict(
    start_to_close_timeout=timedelta(seconds=30),
    schedule_to_close_timeout=timedelta(days=1),
    retry_policy=RetryPolicy(initial_interval=timedelta(seconds=5), backoff_coefficient=2.0,
                             maximum_interval=timedelta(minutes=10), maximum_attempts=10),
)

# The reminder before a deadline (referral.deadline_approaching.v1), added
# after the first release.
REMINDER_PATCH = "deadline-reminder"

# A child who has reached school age when its referral expires leaves the
# queue (the queue decides, and says so in return_place's answer): no
# stop-list, nothing to resume. Added after the reminder; histories v1-*
# and v2-* replay without it.
AGED_OUT_PATCH = "aged-out-no-stoplist"

# Fewer round trips through Temporal per referral (issue 15: a
# distribution day starts ten thousand at once; on the dev server a
# referral's first steps cost 50 ms of the server's CPU, 11 ms with this):
# the queue's calls run as local activities (in the worker that runs the
# workflow task, recorded as a marker, no activity task through the server;
# each applies its effect once per idempotency key, so a workflow task
# retried after a crash repeats it harmlessly), and the parent is told only
# of the kinds the notifications service tells from the activity
# (c.ACTIVITY_NOTIFICATION_KINDS): the others it tells from the queue's fact
# and only acknowledged the activity. The first call decides for the whole
# run (patched is memoised): histories v1-v3 replay with activities
# throughout; v4-* after.
LEAN_PATCH = "local-queue-calls-told-by-facts"

# How far an act's `acted_at` may differ from the workflow's clock.
MAX_CLOCK_SKEW = timedelta(minutes=1)
MAX_ACT_DELAY = timedelta(minutes=15)


def _refuse(why: rules.Refusal) -> ApplicationError:
    """The refusal's English words, and its code and parameters as the
    error's details (pages say them in the reader's language)."""
    return ApplicationError(str(why), {"code": why.code, "params": why.params}, type=c.REFUSED, non_retryable=True)


_fmt = rules.fmt_moment


def _aged_out(returned: object) -> bool:
    """The queue's answer to ReturnPlace (c.PlaceReturned, as JSON) says the
    child left the queue; an older queue answered a bare bool."""
    return isinstance(returned, dict) and returned.get("aged_out") is True



def _act(name: str):
    """The update of a person's act (`name`, as rules.Act names it), written
    as what the act does at its moment: `handler(workflow, req, at)`. Its
    validator refuses what the rules forbid before the update is accepted.
    Acts take turns: one waits for the act under way (or an expiry) to
    finish, is checked again against the state it left (the validator saw
    the state before), and marks itself under way while it runs, so a
    window that ends meanwhile waits for it."""
    act = Act(name)

    def update(handler):
        def validate(self, req: c.Act) -> None:
            self._validate_act(req, act)

        async def run(self, req: c.Act) -> c.ActResult:
            await self._turn()
            at = self._validate_act(req, act)
            self._busy = True
            try:
                return await handler(self, req, at)
            finally:
                self._busy = False

        # Temporal reads the request's type and the result's from these (the
        # validator's must be the handler's).
        req_type = handler.__annotations__["req"]
        run.__name__, run.__qualname__, run.__doc__ = handler.__name__, handler.__qualname__, handler.__doc__
        run.__annotations__ = {"req": req_type, "return": handler.__annotations__["return"]}
        validate.__annotations__ = {"req": req_type, "return": "None"}
        defn = workflow.update(name=name)(run)
        defn.validator(validate)
        return defn
    return update


@workflow.defn(name=c.WORKFLOW_TYPE)
class ReferralWorkflow:
    @workflow.init
    def __init__(self, inp: c.ReferralInput) -> None:
        self._in = inp
        self._cal = kcal.calendar(inp.country)
        self._issued_at = self._cal.local(inp.issued_at)
        self._place = c.PlaceRef(kindergarten=inp.kindergarten, cohort=inp.cohort,
                                 language=inp.language, for_category=inp.for_category)
        p = inp.policy
        self._confirmation_deadline: datetime | None = None
        self._enrolment_deadline: datetime | None = None
        self._state = rules.first_state(inp.needs_confirmation)
        first = rules.first_deadline(self._cal, self._issued_at, inp.needs_confirmation, p)
        self._extension_day: date | None = None
        if inp.needs_confirmation:
            self._confirmation_deadline = first
            self._extension_day = rules.extension_day(self._cal, self._issued_at, p)
        else:
            self._enrolment_deadline = first
        self._deadline: datetime | None = self._confirmation_deadline or self._enrolment_deadline
        self._extended = False
        self._confirmed_at: datetime | None = None
        self._certificate_requests = 0
        self._stoplist_until: datetime | None = None
        self._closed_at: datetime | None = None
        self._busy = False        # an act or an expiry is under way
        self._messages: list[asyncio.Task] = []
        if inp.resume is not None:
            self._continue_from(inp.resume)

    def _continue_from(self, r: c.ResumedReferral) -> None:
        """A referral moved from a previous system: the window that runs is
        the one recorded there, to its recorded end, not a fresh one from
        `issued_at` (whose calendar may also have differed)."""
        deadline = self._cal.local(r.deadline)
        self._state = S(r.state)
        self._extended = r.extended
        self._confirmed_at = self._cal.local(r.confirmed_at) if r.confirmed_at else None
        if self._state is S.AWAITING_CONFIRMATION:
            self._confirmation_deadline, self._enrolment_deadline = deadline, None
            # Extension is allowed on the last working day of the window; once
            # used, the extended window has none.
            self._extension_day = None if r.extended else rules.extension_day_before(self._cal, deadline)
        else:
            self._confirmation_deadline, self._enrolment_deadline = None, deadline
            self._extension_day = None
        self._deadline = deadline

    # ------------------------------------------------------------ main line

    @workflow.run
    async def run(self, inp: c.ReferralInput) -> c.ReferralOutcome:
        # A referral the allocation announced (its referral.issued fact and
        # audit row were written with the referral) is not recorded again:
        # the workflow starts with its first window. Inputs written before
        # carry no `announced` and take the old path, so their histories
        # replay unchanged (no patch: the input decides, not the code).
        if inp.resume is None and not inp.announced:
            # The queue has already allocated the place; the parent can be told
            # while it records the deadline (one workflow task for both).
            self._notify("issued", "referral.issued.v1", self._issued_at,
                         deadline=_fmt(self._deadline), needs_confirmation=inp.needs_confirmation,
                         category=inp.category, cohort=inp.cohort, language=inp.language)
            self._busy = True
            await self._record("issued", "referral.issued", self._issued_at,
                               needs_confirmation=inp.needs_confirmation)
            self._busy = False
        # A resumed referral is neither announced nor recorded again: the
        # parent was told by the previous system, and the queue recorded and
        # audited it (state, deadline) when it imported it.
        # Added after the first release: workflows started before it replay
        # without the reminder (see the module docstring).
        remind = workflow.patched(REMINDER_PATCH)
        reminded: set[datetime] = set()
        while self._state in LIVE_STATES:
            deadline = self._deadline
            assert deadline is not None
            reminder = self._reminder_at(deadline) if remind and deadline not in reminded else None
            wake = reminder or deadline
            left = wake - self._now()
            if left > timedelta(0):
                try:
                    await workflow.wait_condition(
                        lambda: self._state not in LIVE_STATES or self._deadline != deadline,
                        timeout=left)
                    continue
                except asyncio.TimeoutError:
                    # A timer started before the calendar data changed (a
                    # decree) may fire before the deadline as computed now.
                    if self._now() < wake:
                        continue
            if reminder is not None:
                reminded.add(deadline)
                self._notify(f"reminder:{len(reminded)}", "referral.deadline_approaching.v1", reminder,
                             deadline=_fmt(deadline), working_days_left=inp.policy.reminder_working_days,
                             window=rules.window_of(self._state))
                continue
            # The window has ended. An act already under way (accepted before
            # the end) finishes first and may have closed or moved the window.
            await self._turn()
            if self._state in LIVE_STATES and self._deadline == deadline:
                await self._expire(deadline)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._messages:
            await asyncio.gather(*self._messages, return_exceptions=True)
        assert self._closed_at is not None
        return c.ReferralOutcome(referral_id=inp.referral_id, state=self._state, closed_at=self._closed_at,
                                 stoplist_until=self._stoplist_until)

    def _reminder_at(self, deadline: datetime) -> datetime | None:
        """09:00 local on the morning when `reminder_working_days` working
        days of the window are left; None if that is not in the future."""
        at = rules.reminder_at(self._cal, deadline, self._in.policy.reminder_working_days)
        return at if at is not None and at > self._now() else None

    async def _expire(self, deadline: datetime) -> None:
        """Deadline missed: the place returns, the child goes on the stop-list
        for `stoplist_days` calendar days, then back to the queue."""
        self._busy = True
        until = rules.stoplist_end(deadline, self._in.policy)
        # The queue pauses the child in the same transaction as it frees the
        # place (outcome "expired"), so the place cannot go straight back to
        # it; the stop-list call then sets the exact end.
        returned = await self._queue(c.RETURN_PLACE, "expired:return_place", c.ReturnPlace,
                                     at=deadline, place=self._place, outcome="expired")
        if workflow.patched(AGED_OUT_PATCH) and _aged_out(returned):
            # The child reached school age: it left the queue instead.
            self._close(Act.EXPIRE, deadline)
            self._busy = False
            self._notify("expired", "referral.expired.v1", deadline, aged_out=True)
            return
        await self._queue(c.PUT_ON_STOPLIST, "expired:stoplist", c.PutOnStoplist, at=deadline, until=until)
        self._state, self._stoplist_until, self._closed_at = rules.after(self._state, Act.EXPIRE), until, deadline
        self._deadline = None
        self._busy = False
        self._notify("expired", "referral.expired.v1", deadline, stoplist_until=_fmt(until))
        left = until - self._now()
        if left > timedelta(0):
            await workflow.sleep(left)
        await self._queue(c.LIFT_STOPLIST, "resumed:lift_stoplist", c.LiftStoplist, at=until)
        self._state = rules.after(self._state, Act.LIFT_STOPLIST)
        self._notify("resumed", "application.resumed.v1", until)

    # -------------------------------------------------------------- updates

    @_act(c.CONFIRM_PRIVILEGE)
    async def confirm_privilege(self, req: c.ConfirmPrivilege, at: datetime) -> c.ActResult:
        p = self._in.policy
        reason = rules.certificate_out_of_date(req.certificate_issued, self._cal.local_date(at),
                                               p.certificate_valid_days)
        if reason:
            # Not a refusal: the caseworker saw the parent, the request for a
            # fresh certificate is recorded, and the window keeps running.
            self._certificate_requests += 1
            await self._record(f"certificate_requested:{self._certificate_requests}",
                               "referral.certificate_requested", at, reason=reason, actor=req.actor)
            self._notify(f"certificate_requested:{self._certificate_requests}",
                         "referral.certificate_requested.v1", at, reason=reason,
                         deadline=_fmt(self._deadline))
            return self._result("referral.certificate_requested", reason)
        deadline = rules.enrolment_deadline(self._cal, at, p)
        state = rules.after(self._state, Act.CONFIRM)
        await self._record("privilege_confirmed", "referral.privilege_confirmed", at,
                           state=state, deadline=deadline, actor=req.actor)
        self._state, self._confirmed_at = state, at
        self._enrolment_deadline = self._deadline = deadline
        self._notify("privilege_confirmed", "referral.privilege_confirmed.v1", at, deadline=_fmt(deadline))
        return self._result("referral.privilege_confirmed")

    @_act(c.REJECT_PRIVILEGE)
    async def reject_privilege(self, req: c.RejectPrivilege, at: datetime) -> c.ActResult:
        reason = req.reason or None
        # The queue moves the child to the general queue in the same
        # transaction as it frees the place (outcome "privilege_rejected"),
        # so it cannot get the place back as privileged.
        await self._queue(c.RETURN_PLACE, "privilege_rejected:return_place", c.ReturnPlace, at=at,
                          place=self._place, outcome="privilege_rejected", reason=reason, actor=req.actor)
        await self._queue(c.RETURN_TO_GENERAL_QUEUE, "privilege_rejected:general_queue",
                          c.ReturnToGeneralQueue, at=at, from_category=self._in.category,
                          reason=reason, actor=req.actor)
        self._close(Act.REJECT, at)
        self._notify("privilege_rejected", "referral.privilege_rejected.v1", at, reason=reason)
        return self._result("referral.privilege_rejected", reason)

    @_act(c.EXTEND)
    async def extend(self, req: c.ExtendReferral, at: datetime) -> c.ActResult:
        assert self._deadline is not None
        deadline = rules.extended_deadline(self._deadline, self._in.policy)
        await self._record("extended", "referral.extended", at, deadline=deadline, actor=req.actor)
        self._extended = True
        self._confirmation_deadline = self._deadline = deadline
        self._notify("extended", "referral.extended.v1", at, deadline=_fmt(deadline))
        return self._result("referral.extended")

    @_act(c.CANCEL)
    async def cancel(self, req: c.CancelReferral, at: datetime) -> c.ActResult:
        await self._queue(c.RETURN_PLACE, "cancelled:return_place", c.ReturnPlace, at=at,
                          place=self._place, outcome="cancelled", drop_preference=req.drop_preference,
                          reason=req.reason or None, actor=req.actor)
        self._close(Act.CANCEL, at)
        return self._result("referral.cancelled")

    @_act(c.ENROL)
    async def enrol(self, req: c.RecordEnrolment, at: datetime) -> c.ActResult:
        await self._queue(c.RECORD_ENROLMENT, "enrolled:record", c.RecordEnrolmentCall, at=at,
                          place=self._place, actor=req.actor)
        self._close(Act.ENROL, at)
        return self._result("referral.enrolled")

    # ---------------------------------------------------------------- query

    @workflow.query(name=c.STATUS)
    def status(self) -> c.ReferralStatus:
        window = rules.window_of(self._state)
        return c.ReferralStatus(
            referral_id=self._in.referral_id, application_id=self._in.application_id,
            kindergarten=self._in.kindergarten, state=self._state, window=window,
            deadline=self._deadline, issued_at=self._issued_at,
            confirmation_deadline=self._confirmation_deadline,
            enrolment_deadline=self._enrolment_deadline,
            extension_day=None if self._extended or window != "confirmation" else self._extension_day,
            extended=self._extended, confirmed_at=self._confirmed_at,
            certificate_requests=self._certificate_requests,
            stoplist_until=self._stoplist_until, closed_at=self._closed_at,
        )

    # -------------------------------------------------------------- helpers

    def _now(self) -> datetime:
        return self._cal.local(workflow.now() + self._in.clock_offset)

    def _act_time(self, act: c.Act) -> datetime:
        now = self._now()
        if act.acted_at is None:
            return now
        at = self._cal.local(act.acted_at)
        if at > now + MAX_CLOCK_SKEW:
            raise _refuse(rules.Refusal("acted_at_in_future", at=_fmt(at)))
        if at < now - MAX_ACT_DELAY:
            raise _refuse(rules.Refusal("acted_at_too_old", at=_fmt(at)))
        return at

    def _validate_act(self, req: c.Act, act: Act) -> datetime:
        """Refuses `act` as the rules say (a closed referral first, then the
        moment, then the act's own rules); returns its moment."""
        standing = self._standing()
        why = rules.closed_refusal(act, standing)
        if why:
            raise _refuse(why)
        at = self._act_time(req)
        certificate_issued = req.certificate_issued if isinstance(req, c.ConfirmPrivilege) else None
        why = rules.refusal(act, standing, at, certificate_issued)
        if why:
            raise _refuse(why)
        return at

    def _standing(self) -> rules.Standing:
        return rules.Standing(
            state=self._state, category=self._in.category, needs_confirmation=self._in.needs_confirmation,
            issued_at=self._issued_at, deadline=self._deadline, extended=self._extended,
            extension_day=self._extension_day, closed_at=self._closed_at, stoplist_until=self._stoplist_until)

    async def _turn(self) -> None:
        """Waits until no act or expiry is under way. Several may be waiting:
        all wake together, and the first to run takes the turn (it sets
        `_busy` before its first await), so the others wait again."""
        while self._busy:
            await workflow.wait_condition(lambda: not self._busy)

    def _close(self, act: Act, at: datetime) -> None:
        self._state, self._closed_at, self._deadline = rules.after(self._state, act), at, None

    def _result(self, event: str, reason: str | None = None) -> c.ActResult:
        return c.ActResult(event=event, state=self._state, deadline=self._deadline, reason=reason)

    def _key(self, step: str) -> str:
        return f"{workflow.info().workflow_id}:{step}"

    async def _queue(self, name: str, step: str, model: type[c.ActivityCall], **fields) -> object:
        payload = model(idempotency_key=self._key(step), referral_id=self._in.referral_id,
                        application_id=self._in.application_id, **fields)
        if workflow.patched(LEAN_PATCH):
            return await workflow.execute_local_activity(name, payload, activity_id=step, **QUEUE_CALL)
        return await workflow.execute_activity(name, payload, activity_id=step, **QUEUE_CALL)

    async def _record(self, step: str, event: str, at: datetime, *, state: S | None = None,
                      deadline: datetime | None = None, **fields) -> None:
        await self._queue(c.RECORD_REFERRAL, f"{step}:record", c.RecordReferral, at=at, event=event,
                          state=state or self._state, place=self._place,
                          deadline=deadline or self._deadline, **fields)

    def _notify(self, step: str, kind: str, at: datetime, **data) -> None:
        if kind not in c.ACTIVITY_NOTIFICATION_KINDS and workflow.patched(LEAN_PATCH):
            return      # told from the queue's fact
        payload = c.NotifyParent(
            idempotency_key=self._key(f"{step}:notify"), referral_id=self._in.referral_id,
            application_id=self._in.application_id, at=at, kind=kind, parent_id=self._in.parent_id,
            data={"referral_id": self._in.referral_id, "kindergarten_id": self._in.kindergarten, **data},
        )
        # Not awaited: the message goes out on its own; run() waits for all
        # of them before the workflow completes.
        self._messages.append(workflow.start_activity(
            c.NOTIFY_PARENT, payload, activity_id=f"{step}:notify", **NOTIFY_CALL))
