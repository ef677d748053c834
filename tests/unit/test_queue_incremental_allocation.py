"""The allocator's run after a change reads only the pools the change named
(UnitOfWork.request_allocation): proved over random histories to give,
after every step and the allocator loop's tick that follows it (its
calendar's triggers, then its run: services/queue/jobs.py), exactly what
one allocation over every waiting child and every free place gives (the
domain's `allocate`). A change that forgot to name a pool (a child joining
where a place nobody wanted waits, a place freed, a child back from a
referral or the stop-list ...) fails here, as does a new day whose
birthdays no run reads."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.queue.domain import Applicant, JoinQueue, PlaceKey, Refused, allocate
from services.queue.jobs import Allocator
from services.queue.models import Application, PlacePool, Referral
from services.queue.store.times import aware
from tests.builders import Clock, kindergarten, sqlite_queue

KGS = ("sun", "moon", "star")
START = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)  # 10:00 in Bishkek
A, P, R = Application.__table__, PlacePool.__table__, Referral.__table__


def pin(born: date, serial: int) -> str:
    return f"2{born:%d%m%Y}{serial:05d}"


kgs = st.lists(st.sampled_from(KGS), min_size=1, max_size=3, unique=True)
child = st.integers(0, 7)
joins = st.tuples(st.just("join"), st.integers(0, 500), st.sampled_from(("general", "general", "privileged")),
                  st.sampled_from(("ru", "ky")), kgs, st.integers(0, 40))
publications = st.tuples(st.just("publish"), st.sampled_from(KGS), st.sampled_from((2024, 2024, 2025)),
                         st.sampled_from(("ru", "ky")), st.integers(1, 2), st.sampled_from((None, None, "privileged")))
steps = st.one_of(
    joins, joins, publications, publications,
    st.tuples(st.just("remove"), child),
    st.tuples(st.just("prefs"), child, kgs),
    st.tuples(st.just("cancel"), child, st.sampled_from((True, True, False))),  # mostly dropping the kindergarten
    st.tuples(st.just("expire"), child),
    st.tuples(st.just("lift"), child),
    st.tuples(st.just("reject"), child),
    st.tuples(st.just("revoke"), child),
    st.tuples(st.just("leave"), child),
    st.tuples(st.just("withdraw"), st.sampled_from(KGS), st.sampled_from((2024, 2025)), st.sampled_from(("ru", "ky"))),
    # False: the day turns inside the loop's tick, after its calendar asked
    # for the previous day and before its run; the next change comes between.
    st.tuples(st.just("day"), st.integers(1, 120), st.booleans()),
    st.tuples(st.just("policy"),),
)


def full_run_would_give(svc) -> dict[str, tuple]:
    """One allocation over every waiting child and every free place, by the domain alone."""
    policy, _ = svc.policy.current()
    with svc.sessions() as s:
        waiting = [Applicant(r.id, r.birth_date, r.category, aware(r.queue_date), r.language, tuple(r.preferences))
                   for r in s.execute(sa.select(A).where(A.c.status == "queued"))]
        free = {(PlaceKey(r.kindergarten_id, r.cohort, r.language), r.for_category or None): r.free
                for r in s.execute(sa.select(P).where(P.c.free > 0))}
    return {x.child_id: (x.place, x.for_category, x.preference_index)
            for x in allocate(waiting, free, svc.ctx.today(policy), policy)}


def live_referral(svc, cid: str):
    with svc.sessions() as s:
        return s.execute(sa.select(R.c.id, R.c.application_id).where(R.c.application_id == cid,
                                                                     R.c.status == "live")).first()


def status(svc, cid: str) -> str | None:
    with svc.sessions() as s:
        return s.execute(sa.select(A.c.status).where(A.c.id == cid)).scalar()


def apply(svc, clock: Clock, n: int, step: tuple, joined: list[str]) -> None:
    """One change through the use cases, as a family, a kindergarten or a workflow makes it."""
    kind, *args = step
    cid = joined[args[0] % len(joined)] if joined and kind not in ("join", "publish", "withdraw", "day", "policy") \
        else None
    at = clock.now
    try:
        if kind == "join":
            days, cat, lang, prefs, hours = args
            born = date(2024, 1, 1) + timedelta(days=days)  # most are 2 by the start, some turn 2 later
            cid = f"c{len(joined)}"
            svc.entries.join(JoinQueue(application_id=cid, pin=pin(born, len(joined)), surname="Asanov", name="Aibek",
                                       category=cat, language=lang, preferences=tuple(prefs),
                                       queue_date=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hours)),
                             actor="parent:1")
            joined.append(cid)
        elif kind == "publish":
            kg, cohort, lang, count, cat = args
            svc.places.publish(kg, cohort, lang, count, actor="admin:1", for_category=cat)
        elif kind == "withdraw":
            svc.places.withdraw(*args, 1, actor="admin:1")
        elif kind == "remove" and cid:
            svc.entries.remove(cid, actor="parent:1", reason="moved away")
        elif kind == "prefs" and cid:
            svc.entries.set_preferences(cid, args[1], actor="parent:1")
        elif kind in ("cancel", "expire", "reject") and cid and (ref := live_referral(svc, cid)):
            outcome = {"cancel": "cancelled", "expire": "expired", "reject": "privilege_rejected"}[kind]
            svc.referrals.return_place(key=f"k{n}", referral_id=str(ref.id), application_id=cid, at=at,
                                       outcome=outcome, drop_preference=kind == "cancel" and args[1])
            if kind == "expire" and status(svc, cid) == "paused":
                svc.referrals.put_on_stoplist(key=f"k{n}s", referral_id=str(ref.id), application_id=cid, at=at,
                                              until=at + timedelta(days=30))
        elif kind == "lift" and cid and status(svc, cid) == "paused":
            svc.referrals.lift_stoplist(key=f"k{n}", referral_id=None, application_id=cid, at=at)
        elif kind == "revoke" and cid:
            svc.entries.revoke_privilege(cid, actor="supervisor:1", reason="false certificate")
        elif kind == "leave" and cid and (ref := live_referral(svc, cid)):
            svc.referrals.record_enrolment(key=f"k{n}", referral_id=str(ref.id), application_id=cid, at=at)
            svc.leaving.leave(cid, actor="admin:1")
        elif kind == "day":
            clock.advance(days=args[0])  # the loop's next tick keeps the calendar (ageing, the day's request)
        elif kind == "policy":
            policy, _ = svc.policy.current()  # children of one more year, or one less, may take places
            svc.policy.change({"min_age_years": 3 - policy.min_age_years}, actor="admin:1", reason="a new law")
    except Refused:
        pass  # a change the rules refuse changes nothing


def tick(svc, n: int, step: tuple, *, calendar: bool = True):
    """The allocator loop's tick after a change (Allocator.run_once): the
    calendar's triggers (`calendar`), then the run, which must give what an
    allocation over everything gives. Returns the run (None: nothing asked)."""
    if calendar:
        Allocator(svc).keep_calendar()
    want = full_run_would_give(svc)
    run = svc.allocation.process_requests()
    got = {} if run is None else {x.application_id: (x.place, x.for_category, x.preference_index)
                                  for x in run.issued}
    if calendar or run is not None:
        assert got == want, f"after step {n} {step}"
    return run


def loop_ticks_after(svc, n: int, step: tuple, *, day_turned_inside: bool) -> None:
    """The tick after a change; `day_turned_inside`: the day turned in the
    tick, after its calendar asked for the previous day, and the change
    came before its run: that run, the first of its day, reads every pool
    if the change asked for one; if nothing asked, the next tick asks for
    the day."""
    if day_turned_inside and tick(svc, n, step, calendar=False) is not None:
        return
    tick(svc, n, step)


# After places of sun's 2024 ru group (published first) go to two children,
# one place of its 2025 ky group waits for a child who lists only sun and
# turns 2 the next day (born 2025-03-02): the history a random run found,
# before its day passes.
TURNS_2_OVERNIGHT = [("join", 0, "general", "ru", ["sun", "moon", "star"], 0), ("publish", "sun", 2025, "ky", 1, None),
                     ("join", 0, "general", "ru", ["sun"], 0), ("join", 426, "general", "ky", ["sun"], 0)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(st.lists(publications, min_size=1, max_size=4), st.lists(steps, min_size=1, max_size=25))
@example(first=[("publish", "sun", 2024, "ru", 1, None)] * 2,
         history=[*TURNS_2_OVERNIGHT, ("day", 1, False)])  # the loop's next tick asks for the day
@example(first=[("publish", "sun", 2024, "ru", 1, None)] * 2,
         history=[*TURNS_2_OVERNIGHT, ("day", 1, False), ("publish", "moon", 2024, "ru", 1, None)])
def test_run_after_a_change_gives_what_a_run_over_every_pool_gives(tmp_path_factory, first, history):
    """Places published first, before any child: after the first run they
    are places nobody wants, which only a change that names them can give."""
    clock = Clock(START)
    folder = tmp_path_factory.mktemp("incremental")
    with sqlite_queue(folder, clock, [kindergarten(k, languages=["ru", "ky"]) for k in KGS]) as svc:
        joined: list[str] = []
        inside = False  # the day turned after the loop's calendar: its run is still to come
        for n, step in enumerate([*first, *history]):
            apply(svc, clock, n, step, joined)
            if step[0] == "day" and not step[2]:
                inside = True
                continue
            loop_ticks_after(svc, n, step, day_turned_inside=inside)
            inside = False
        if inside:
            loop_ticks_after(svc, n, step, day_turned_inside=True)
        assert svc.audit.check_register() == []


def test_a_child_joining_takes_a_place_nobody_wanted_without_a_run_over_every_pool(tmp_path):
    """The case the pools named by a join exist for: a free place at `moon`
    waits for nobody; a child who lists it joins; the run after the join
    reads `moon`'s group only, and gives it."""
    clock = Clock(START)
    with sqlite_queue(tmp_path, clock, [kindergarten(k, languages=["ru", "ky"]) for k in KGS]) as svc:
        svc.places.publish("moon", 2024, "ru", 1, actor="admin:1")
        svc.places.publish("star", 2024, "ru", 1, actor="admin:1")
        assert svc.allocation.process_requests().issued == []     # the first run of the day reads every pool
        svc.entries.join(JoinQueue(application_id="late", pin=pin(date(2024, 5, 5), 1), surname="A", name="B",
                                   category="general", language="ru", preferences=("moon",)), actor="parent:1")
        run = svc.allocation.process_requests()
        assert [(x.application_id, x.place.kindergarten) for x in run.issued] == [("late", "moon")]
        with svc.sessions() as s:
            free_before = s.execute(sa.text("SELECT free_before FROM allocation_runs ORDER BY id DESC LIMIT 1")
                                    ).scalar()
        assert "star" not in str(free_before)  # the place nobody wants was not read
        [report] = svc.audit.replay([run.run_id])
        assert report["matches"]


@pytest.mark.parametrize("daily", [True, False])
def test_first_run_of_a_new_day_reads_every_pool(tmp_path, daily):
    """Children turn 2 overnight: a place nobody could take yesterday is
    theirs today, though no change named it."""
    clock = Clock(START)
    with sqlite_queue(tmp_path, clock, [kindergarten(k, languages=["ru", "ky"]) for k in KGS]) as svc:
        svc.entries.join(JoinQueue(application_id="young", pin=pin(date(2025, 3, 20), 1), surname="A", name="B",
                                   category="general", language="ru", preferences=("sun",)), actor="parent:1")
        svc.places.publish("sun", 2025, "ru", 1, actor="admin:1")
        assert svc.allocation.process_requests().issued == []     # not 2 yet
        clock.advance(days=30)
        if daily:
            svc.allocation.request_daily()
        else:  # a run asked for by something else the same day
            svc.places.publish("moon", 2025, "ky", 1, actor="admin:1")
        assert [x.application_id for x in svc.allocation.process_requests().issued] == ["young"]


def test_a_place_returned_by_a_cancelled_referral_goes_to_the_next_child_though_its_holder_drops_it(tmp_path):
    """The returned place is named by its own pool, not only by the lists of
    the child who gave it up (which no longer hold that kindergarten)."""
    clock = Clock(START)
    with sqlite_queue(tmp_path, clock, [kindergarten(k, languages=["ru", "ky"]) for k in KGS]) as svc:
        for cid, hours, prefs in (("first", 0, ("sun", "moon")), ("next", 5, ("sun",))):
            svc.entries.join(JoinQueue(application_id=cid, pin=pin(date(2024, 5, 5), hours), surname="A", name="B",
                                       category="general", language="ru", preferences=prefs,
                                       queue_date=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=hours)),
                             actor="parent:1")
        svc.places.publish("sun", 2024, "ru", 1, actor="admin:1")
        [issued] = svc.allocation.process_requests().issued
        assert issued.application_id == "first"
        assert svc.allocation.process_requests() is None      # nothing asked since
        svc.referrals.return_place(key="k1", referral_id=str(issued.referral_id), application_id="first",
                                   at=clock.now, outcome="cancelled", drop_preference=True, actor="parent:1")
        run = svc.allocation.process_requests()
        assert [(x.application_id, x.place.kindergarten) for x in run.issued] == [("next", "sun")]


def test_a_child_who_turns_2_overnight_gets_the_place_waiting_for_him_though_no_change_asks(tmp_path):
    """Nobody publishes, joins or returns anything on his birthday: the
    allocator loop's first tick of the day asks for the day's run itself,
    and that run reads every pool."""
    clock = Clock(START)
    with sqlite_queue(tmp_path, clock, [kindergarten(k, languages=["ru", "ky"]) for k in KGS]) as svc:
        loop = Allocator(svc)
        svc.places.publish("sun", 2025, "ky", 1, actor="admin:1")
        svc.places.publish("moon", 2024, "ru", 1, actor="admin:1")
        svc.entries.join(JoinQueue(application_id="young", pin=pin(date(2025, 3, 2), 1), surname="A", name="B",
                                   category="general", language="ky", preferences=("sun",)), actor="parent:1")
        assert loop.run_once() == 0                                # 2 tomorrow
        assert loop.run_once() == 0 and svc.allocation.process_requests() is None  # nothing asked since
        clock.advance(days=1)
        assert loop.run_once() == 1
        assert live_referral(svc, "young") is not None


def test_a_day_request_left_by_a_loop_that_stopped_is_run_by_the_loop_started_after_it(tmp_path):
    """The loop asked for the day and stopped before its run (a restart):
    the request is in the database, and the new loop's first tick runs it
    though its own request for the day is not written again."""
    clock = Clock(START)
    with sqlite_queue(tmp_path, clock, [kindergarten(k, languages=["ru", "ky"]) for k in KGS]) as svc:
        svc.places.publish("sun", 2025, "ky", 1, actor="admin:1")
        svc.entries.join(JoinQueue(application_id="young", pin=pin(date(2025, 3, 2), 1), surname="A", name="B",
                                   category="general", language="ky", preferences=("sun",)), actor="parent:1")
        Allocator(svc).run_once()
        clock.advance(days=1, hours=3)
        Allocator(svc).keep_calendar()                             # then the process stopped
        assert svc.allocation.request_daily() is False             # the day's request is there once
        assert Allocator(svc).run_once() == 1


def test_the_allocator_loop_looks_at_requests_every_poll_and_keeps_the_calendar_less_often():
    """The calendar's triggers are minutes and days apart: kept once in the
    loop's `calendar_every`, while the requests are looked at every poll
    (a change's allocation does not wait for the calendar)."""
    import threading
    from types import SimpleNamespace

    calls = {"calendar": 0, "requests": 0}

    def calendar():
        calls["calendar"] += 1

    def requests():
        calls["requests"] += 1
        if calls["requests"] == 20:
            stop.set()

    stop = threading.Event()
    queue = SimpleNamespace(places=SimpleNamespace(publish_due=calendar),
                            referrals=SimpleNamespace(lift_due_stoplists=calendar),
                            ageing=SimpleNamespace(daily=calendar),
                            allocation=SimpleNamespace(request_daily=calendar, process_requests=requests))
    loop = threading.Thread(target=Allocator(queue, poll=0.001, calendar_every=3600), args=(stop,), daemon=True)
    loop.start()
    loop.join(30)
    assert calls == {"calendar": 4, "requests": 20}, "the four triggers once, the requests every tick"
