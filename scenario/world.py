"""The scenario's queue service: an in-memory register of places and a queue
of children, with the queue-side activities of workflows/contracts.py.

The ReferralWorkflow calls these activities exactly as it calls the real
queue service; each applies its effect once per idempotency key and reports
the fact it produced as an output line. Lines are collected per cause (an
allocation, a step, an expiry, the end of a stop-list) so the runner can
print them in a deterministic order when several workflows act at once.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from temporalio import activity

from kezek.calendar import WorkingCalendar
from scenario import ageing
from scenario.model import ChildSpec, Scenario
from services.queue.domain import Applicant, PlaceKey
from workflows import contracts as c

# Within one cause, lines are printed in this order whatever order the
# workflow's effects ran in: what happened to the referral, to the place,
# then to the application.
def line_rank(line: dict) -> int:
    event = line["event"]
    if event.startswith("referral."):
        return 0
    if event.startswith("place."):
        return 1
    if event.startswith("application."):
        return 2
    return 3


FIELD_ORDER = ("at", "event", "child", "kindergarten", "cohort", "language", "deadline", "reason", "until",
               "step")


def local_iso(moment: datetime, cal: WorkingCalendar) -> str:
    return cal.local(moment).replace(tzinfo=None).isoformat(timespec="seconds")


@dataclass
class Child:
    spec: ChildSpec
    category: str
    preferences: list[str]
    queue_date: datetime | None = None       # aware, local
    status: str = "absent"                   # absent | queued | referred | enrolled | paused | removed | left | aged_out
    kindergarten: str | None = None
    referral: "Referral | None" = None       # the latest one (its workflow may still run)
    referrals: int = 0
    _applicant: Applicant | None = None

    @property
    def alias(self) -> str:
        return self.spec.alias

    def applicant(self) -> Applicant:
        # Cached: allocation asks for every waiting child at every moment.
        if self._applicant is None:
            assert self.queue_date is not None
            self._applicant = Applicant(
                child_id=self.alias, birth_date=self.spec.birth_date, category=self.category,
                queue_date=self.queue_date, language=self.spec.language, preferences=tuple(self.preferences))
        return self._applicant

    def changed(self) -> None:
        self._applicant = None


@dataclass
class Referral:
    id: str
    seq: int
    child: Child
    place: PlaceKey
    for_category: str | None
    live: bool = True
    deadline: datetime | None = None
    stoplist_until: datetime | None = None


@dataclass
class Cause:
    """What output lines belong to: the step index (or None) and the lines."""

    step: int | None
    lines: list[dict[str, Any]] = field(default_factory=list)


def effect(name: str, done: str | Callable[[Any], str]):
    """A queue-side activity of the world (`name`), written as what it does
    to the referral: `apply(world, ref, cause, call)` runs once per
    idempotency key, when the simulated clock reaches the call's moment; then
    the fact `done` (a name, or one made from the call) is reported to
    whoever waits for it (World.expect), by a repeated call too."""
    def wrap(apply: Callable[..., None]):
        async def run(self: World, call: c.ActivityCall) -> None:
            entered = await self._enter(call)
            if entered:
                apply(self, *entered, call)
            self._done(call.referral_id, done(call) if callable(done) else done)

        # The activity's argument is the one `apply` declares (Temporal reads it).
        run.__name__, run.__qualname__, run.__doc__ = apply.__name__, apply.__qualname__, apply.__doc__
        run.__annotations__ = {"call": apply.__annotations__["call"], "return": "None"}
        return activity.defn(name=name)(run)
    return wrap


class World:
    def __init__(self, scenario: Scenario, cal: WorkingCalendar) -> None:
        self.scenario, self.cal, self.policy = scenario, cal, scenario.policy
        self.children: dict[str, Child] = {
            alias: Child(spec, spec.category, list(spec.preferences)) for alias, spec in scenario.children.items()}
        for child in self.children.values():
            if child.spec.applied is not None:
                child.queue_date = cal.local(child.spec.applied)
                child.status = "queued"
        self.free: Counter[tuple[PlaceKey, str | None]] = Counter()
        self.held: Counter[PlaceKey] = Counter()
        self.enrolled: Counter[PlaceKey] = Counter()
        self.place_keys: set[PlaceKey] = set()
        # (kindergarten, cohort, language) -> children who list it, for a
        # quick look at who could take a free place.
        self.wanting: dict[tuple[str, int, str], list[Child]] = {}
        for child in self.children.values():
            for kg in child.spec.preferences:
                key = (kg, child.spec.birth_date.year, child.spec.language)
                self.wanting.setdefault(key, []).append(child)
        self.referrals: dict[str, Referral] = {}
        self.now: datetime | None = None
        self._clock = asyncio.Condition()
        self._applied: set[str] = set()
        self._cause_of: dict[str, Cause] = {}
        self._waiters: dict[tuple[str, str], asyncio.Future] = {}
        self._happened: set[tuple[str, str]] = set()
        self.notifications = 0

    # ------------------------------------------------------------- clock

    async def set_now(self, moment: datetime) -> None:
        async with self._clock:
            self.now = moment
            self._clock.notify_all()

    async def _reached(self, moment: datetime) -> None:
        """An effect dated later than the runner's clock waits for it: the
        server's clock runs on in real time while the runner works, and a
        deadline must not take effect in the middle of an earlier moment."""
        async with self._clock:
            await self._clock.wait_for(lambda: self.now is not None and self.now >= moment)

    # ------------------------------------------------------------ causes

    def attribute(self, referral_id: str, cause: Cause) -> None:
        self._cause_of[referral_id] = cause

    def expect(self, referral_id: str, what: str) -> asyncio.Future:
        """A future for a fact about a referral ("referral.issued", "paused",
        "resumed"); already done if the fact came first."""
        fut = asyncio.get_running_loop().create_future()
        if (referral_id, what) in self._happened:
            self._happened.discard((referral_id, what))
            fut.set_result(None)
        else:
            self._waiters[(referral_id, what)] = fut
        return fut

    def _done(self, referral_id: str, what: str) -> None:
        fut = self._waiters.pop((referral_id, what), None)
        if fut is None:
            self._happened.add((referral_id, what))
        elif not fut.done():
            fut.set_result(None)

    def line(self, cause: Cause, at: datetime, event: str, **fields: Any) -> None:
        data = {"at": local_iso(at, self.cal), "event": event, **fields}
        if cause.step is not None:
            data["step"] = cause.step
        cause.lines.append({k: data[k] for k in FIELD_ORDER if data.get(k) is not None})

    def _place_fields(self, ref: Referral) -> dict[str, Any]:
        return {"child": ref.child.alias, "kindergarten": ref.place.kindergarten, "cohort": ref.place.cohort,
                "language": ref.place.language}

    # ---------------------------------------------------------- register

    def waiting(self) -> list[Child]:
        return [ch for ch in self.children.values() if ch.status == "queued"]

    def candidates(self, free: dict[tuple[PlaceKey, str | None], int]) -> list[Child]:
        """Waiting children who still list a kindergarten with a free place of
        their cohort and language: the only ones an allocation can serve."""
        found: dict[str, Child] = {}
        for key, _ in free:
            for ch in self.wanting.get((key.kindergarten, key.cohort, key.language), ()):
                if ch.status == "queued" and key.kindergarten in ch.preferences:
                    found[ch.alias] = ch
        return list(found.values())

    def free_places(self) -> dict[tuple[PlaceKey, str | None], int]:
        return {k: n for k, n in self.free.items() if n > 0}

    def hold(self, child: Child, place: PlaceKey, for_category: str | None, at: datetime) -> Referral:
        self.free[(place, for_category)] -= 1
        self.held[place] += 1
        child.referrals += 1
        ref = Referral(f"{child.alias}-{child.referrals}", len(self.referrals) + 1, child, place, for_category)
        self.referrals[ref.id] = ref
        child.referral, child.status, child.kindergarten = ref, "referred", place.kindergarten
        return ref

    def leave(self, child: Child, at: datetime, cause: Cause) -> None:
        """The enrolled child leaves (the `leave` step, as the queue's
        usecases/leaving.py does it): the place it took is free again in the
        pool it came from, and the child's application is closed."""
        ref = child.referral
        assert ref is not None and child.status == "enrolled"
        self.enrolled[ref.place] -= 1
        self.free[(ref.place, ref.for_category)] += 1
        child.status, child.kindergarten = "left", None
        self.line(cause, at, "place.freed", **self._place_fields(ref))
        self.line(cause, at, "application.left", child=child.alias, kindergarten=ref.place.kindergarten)

    def _once(self, call: c.ActivityCall) -> bool:
        if call.idempotency_key in self._applied:
            return False
        self._applied.add(call.idempotency_key)
        return True

    # -------------------------------------------------------- activities

    def activities(self) -> list:
        return [self.return_place, self.return_to_general_queue, self.put_on_stoplist, self.lift_stoplist,
                self.record_enrolment, self.record_referral, self.notify_parent]

    async def _enter(self, call: c.ActivityCall) -> tuple[Referral, Cause] | None:
        await self._reached(call.at)
        if not self._once(call):
            return None
        ref = self.referrals[call.referral_id]
        return ref, self._cause_of[call.referral_id]

    @effect(c.RECORD_REFERRAL, done=lambda call: call.event)
    def record_referral(self, ref: Referral, cause: Cause, call: c.RecordReferral) -> None:
        ref.deadline = call.deadline
        deadline = local_iso(call.deadline, self.cal) if call.deadline else None
        self.line(cause, call.at, call.event, **self._place_fields(ref), deadline=deadline, reason=call.reason)

    @activity.defn(name=c.RETURN_PLACE)
    async def return_place(self, call: c.ReturnPlace) -> c.PlaceReturned:
        entered = await self._enter(call)
        child = self.referrals[call.referral_id].child
        if entered:
            ref, cause = entered
            ref.live, ref.deadline = False, None
            self.held[ref.place] -= 1
            self.free[(ref.place, ref.for_category)] += 1
            # As the queue service does, in the same change as the place is
            # freed: an expired referral's child is paused at once and a
            # rejected privilege is gone, so the place cannot go back to it;
            # a child past school age leaves the queue instead.
            aged = child.status == "referred" and ageing.leaves_queue(self, child, call.at)
            if child.status == "referred" and not aged:
                child.status = "paused" if call.outcome == "expired" else "queued"
                child.kindergarten = None
            if call.outcome == "privilege_rejected" and child.category != "general" and not aged:
                child.category = "general"
                child.changed()
            if call.drop_preference and ref.place.kindergarten in child.preferences and not aged:
                child.preferences.remove(ref.place.kindergarten)
                child.changed()
            self.line(cause, call.at, f"referral.{call.outcome}", **self._place_fields(ref), reason=call.reason)
            self.line(cause, call.at, "place.returned", **self._place_fields(ref))
            if aged:
                ageing.age_out(self, child, cause, call.at)
                if call.outcome == "expired":
                    self._done(call.referral_id, "paused")  # the expiry goes no further
        self._done(call.referral_id, "place.returned")
        return c.PlaceReturned(applied=entered is not None, aged_out=child.status == ageing.AGED_OUT)

    @effect(c.RETURN_TO_GENERAL_QUEUE, done="returned_to_general_queue")
    def return_to_general_queue(self, ref: Referral, cause: Cause, call: c.ReturnToGeneralQueue) -> None:
        if ref.child.status != ageing.AGED_OUT:
            ref.child.category = "general"
            ref.child.changed()
            self.line(cause, call.at, "application.returned_to_general_queue", child=ref.child.alias)

    @effect(c.PUT_ON_STOPLIST, done="paused")
    def put_on_stoplist(self, ref: Referral, cause: Cause, call: c.PutOnStoplist) -> None:
        ref.stoplist_until = call.until
        if ref.child.status in ("queued", "referred"):
            ref.child.status, ref.child.kindergarten = "paused", None
        self.line(cause, call.at, "application.paused", child=ref.child.alias,
                  until=local_iso(call.until, self.cal))

    @effect(c.LIFT_STOPLIST, done="resumed")
    def lift_stoplist(self, ref: Referral, cause: Cause, call: c.LiftStoplist) -> None:
        ref.stoplist_until = None
        # A child removed from the queue meanwhile stays removed; one
        # past school age leaves instead of coming back.
        if ref.child.status == "paused" and ageing.leaves_queue(self, ref.child, call.at):
            ageing.age_out(self, ref.child, cause, call.at)
        elif ref.child.status == "paused":
            ref.child.status = "queued"
            self.line(cause, call.at, "application.resumed", child=ref.child.alias)

    @effect(c.RECORD_ENROLMENT, done="enrolled")
    def record_enrolment(self, ref: Referral, cause: Cause, call: c.RecordEnrolmentCall) -> None:
        ref.live, ref.deadline = False, None
        self.held[ref.place] -= 1
        self.enrolled[ref.place] += 1
        ref.child.status, ref.child.kindergarten = "enrolled", ref.place.kindergarten
        self.line(cause, call.at, "referral.enrolled", **self._place_fields(ref))

    @activity.defn(name=c.NOTIFY_PARENT)
    async def notify_parent(self, call: c.NotifyParent) -> None:
        # The scenario prints facts, not messages; it only counts them.
        if self._once(call):
            self.notifications += 1
