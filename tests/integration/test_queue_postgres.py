"""Concurrency safety of the queue on real PostgreSQL: the invariants of
DOMAIN.md section 6 hold when allocations race each other and race the
return of places, because the database enforces them (row locks, CHECK
constraints, the partial unique index of live referrals)."""
from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import IntegrityError

from kezek.db import make_engine, make_session_factory
from kezek.migrations import upgrade
from services.queue import domain as d
from services.queue.domain import JoinQueue
from services.queue.usecases import Queue

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)
KGS = ("sun", "moon", "star", "sky", "sea")
TABLES = ("allocation_audit", "referrals", "allocation_runs", "allocation_requests", "place_publications",
          "places", "applications", "audit_trail", "outbox", "processed_events")


@pytest.fixture(scope="module")
def pg_queue(pg_cluster):
    from kezek.db import ensure_database
    url = pg_cluster.url("queue_concurrency")
    ensure_database(url)
    upgrade("queue", url)
    engine = make_engine(url, pool_size=10)
    svc = Queue(make_session_factory(engine), clock=lambda: NOW)
    for kid in KGS:
        svc.kindergartens.save({"id": kid, "name": kid, "district": "d", "languages": ["ru", "ky"]}, actor="admin")
    yield svc
    engine.dispose()


def reset(svc: Queue) -> None:
    with svc.sessions.begin() as s:
        s.execute(sa.text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


def pin(born: date, serial: int) -> str:
    return f"2{born:%d%m%Y}{serial:05d}"


def fill(svc: Queue, children: list[tuple], places: list[tuple], first: int = 0) -> None:
    for i, (born, cat, hours, lang, prefs) in enumerate(children, first):
        svc.entries.join(JoinQueue(application_id=f"c{i:03d}", pin=pin(born, i), surname="S", name="N",
                                 category=cat, language=lang, preferences=prefs,
                                 queue_date=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=hours)), actor="t")
    for kg, cohort, lang, cat, n in places:
        svc.places.publish(kg, cohort, lang, n, for_category=cat, actor="t")


def expected(svc: Queue) -> dict[str, tuple]:
    """What one allocation over the same state gives, by the domain alone."""
    with svc.sessions() as s:
        rows = s.execute(sa.text("SELECT id, birth_date, category, queue_date, language, preferences "
                                 "FROM applications WHERE status = 'queued'")).all()
        free = {(d.PlaceKey(kg, c, l), cat or None): n for kg, c, l, cat, n in s.execute(sa.text(
            "SELECT kindergarten_id, cohort, language, for_category, free FROM places WHERE free > 0"))}
    waiting = [d.Applicant(r[0], r[1], r[2], r[3], r[4], tuple(r[5])) for r in rows]
    policy, _ = svc.policy.current()
    return {x.child_id: (str(x.place), x.for_category) for x in d.allocate(waiting, free, NOW.date(), policy)}


def held(svc: Queue) -> dict[str, tuple]:
    with svc.sessions() as s:
        return {a: (f"{kg}/{c}/{l}", cat or None) for a, kg, c, l, cat in s.execute(sa.text(
            "SELECT application_id, kindergarten_id, cohort, language, for_category FROM referrals "
            "WHERE status = 'live'"))}


def race(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    out, errors = [None] * n, []

    def run(i):
        barrier.wait()
        try:
            out[i] = fn(i)
        except Exception as exc:  # surfaced below
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return out


children_st = st.lists(st.tuples(
    st.dates(date(2023, 1, 1), date(2025, 6, 1)), st.sampled_from(("general", "general", "privileged")),
    st.integers(0, 50), st.sampled_from(("ru", "ky")),
    st.lists(st.sampled_from(KGS), min_size=1, max_size=3, unique=True).map(tuple)), min_size=1, max_size=25)
places_st = st.lists(st.tuples(st.sampled_from(KGS), st.sampled_from((2023, 2024, 2025)), st.sampled_from(("ru", "ky")),
                               st.sampled_from((None, None, "privileged")), st.integers(1, 3)), min_size=1, max_size=8)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(children=children_st, places=places_st, lock=st.booleans(), runners=st.integers(2, 3))
def test_concurrent_allocations_give_exactly_what_one_allocation_would(pg_queue, children, places, lock, runners):
    """With or without the row locks (then the constraints alone decide),
    any number of concurrent runs end with the allocation a single run
    makes: no place held twice, one live referral per child, nobody passed
    over."""
    svc = pg_queue
    reset(svc)
    fill(svc, children, places)
    want = expected(svc)
    race(runners, lambda i: svc.allocation.run(lock=lock))
    assert held(svc) == want
    assert svc.audit.check_register() == []
    assert all(r["matches"] for r in svc.audit.replay())


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(children=children_st, places=places_st, later=children_st, more=places_st, runners=st.integers(1, 3))
def test_runs_after_changes_read_only_their_pools_and_give_what_a_full_run_gives(pg_queue, children, places, later,
                                                                                 more, runners):
    """After the day's run over every pool, children join and places are
    published; the runs they asked for (racing each other) read only the
    pools those changes named (on PostgreSQL, the children who list those
    kindergartens, found by the preferences' index) and end with what one
    run over every pool would give."""
    svc = pg_queue
    reset(svc)
    fill(svc, children, places)
    svc.allocation.run()
    before = held(svc)
    fill(svc, later[:10], more, first=len(children))
    want = expected(svc)
    race(runners, lambda i: svc.allocation.run(requested=True))
    assert {a: h for a, h in held(svc).items() if a not in before} == want
    assert svc.audit.check_register() == []
    assert all(r["matches"] for r in svc.audit.replay())


def test_two_allocations_at_once_never_hold_one_place_twice(pg_queue):
    svc = pg_queue
    reset(svc)
    kids = [(date(2024, 1, 1) + timedelta(days=i % 200), "general", i, "ru", (KGS[i % 5], KGS[(i + 1) % 5]))
            for i in range(300)]
    fill(svc, kids, [(kg, 2024, "ru", None, 20) for kg in KGS])
    want = expected(svc)
    results = race(2, lambda i: svc.allocation.run())
    assert sum(len(r.issued) for r in results) == len(want) == 100
    assert held(svc) == want
    assert svc.audit.check_register() == []


def test_allocation_racing_cancellations_keeps_every_place_counted(pg_queue):
    svc = pg_queue
    reset(svc)
    kids = [(date(2024, 1, 1), "general", i, "ru", ("sun", "moon")) for i in range(40)]
    fill(svc, kids, [("sun", 2024, "ru", None, 10), ("moon", 2024, "ru", None, 10)])
    first = svc.allocation.run()
    live = list(first.issued)

    def act(i):
        if i == 0:
            for ref in live[:10]:
                svc.referrals.return_place(key=f"cancel-{ref.referral_id}", referral_id=str(ref.referral_id),
                                 application_id=ref.application_id, at=NOW, outcome="cancelled",
                                 drop_preference=True)
        else:
            for _ in range(10):
                svc.allocation.run()
    race(3, act)
    svc.allocation.run()
    assert svc.audit.check_register() == []
    with svc.sessions() as s:
        free, held_, = s.execute(sa.text("SELECT sum(free), sum(held) FROM places")).one()
        waiting_wanting = s.execute(sa.text("SELECT count(*) FROM applications WHERE status = 'queued'")).scalar()
    assert free + held_ == 20
    assert free == 0 or waiting_wanting == 0


def test_database_refuses_a_second_live_referral_for_one_child(pg_queue):
    svc = pg_queue
    reset(svc)
    fill(svc, [(date(2024, 1, 1), "general", 0, "ru", ("sun",))], [("sun", 2024, "ru", None, 2)])
    svc.allocation.run()
    with pytest.raises(IntegrityError, match="uq_referrals_live_child"):
        with svc.sessions.begin() as s:
            s.execute(sa.text("INSERT INTO referrals (application_id, place_id, kindergarten_id, cohort, language, "
                              "for_category, category, needs_confirmation, preference_index, status, state, run_id, "
                              "issued_at, deadline) SELECT application_id, place_id, kindergarten_id, cohort, language, "
                              "for_category, category, needs_confirmation, preference_index, 'live', state, run_id, "
                              "issued_at, deadline FROM referrals"))


def test_database_refuses_taking_a_place_that_is_not_free(pg_queue):
    svc = pg_queue
    reset(svc)
    fill(svc, [], [("sun", 2024, "ru", None, 1)])
    with pytest.raises(IntegrityError, match="ck_places_free"):
        with svc.sessions.begin() as s:
            s.execute(sa.text("UPDATE places SET free = free - 2, held = held + 2"))


def test_two_registrations_of_one_child_at_once_leave_one_entry(pg_queue):
    svc = pg_queue
    reset(svc)
    from services.queue.domain import Refused

    def register(i):
        try:
            svc.entries.join(JoinQueue(application_id=f"dup{i}", pin=pin(date(2024, 1, 1), 42), surname="S", name="N",
                                     category="general", language="ru", preferences=("sun",)), actor=f"p{i}")
            return "ok"
        except Refused as exc:
            return exc.field
    assert sorted(race(4, register)) == ["ok", "pin", "pin", "pin"]


def _many_children(n: int) -> list[tuple]:
    """Children of two cohorts and both languages, three preferences each."""
    return [(date(2023 + i % 2, 1 + i % 12, 1 + i % 28), ("general", "general", "privileged")[i % 3], i,
             ("ru", "ky")[i // 2 % 2], (KGS[i % 5], KGS[(i + 2) % 5], KGS[(i + 4) % 5])) for i in range(n)]


def _many_places() -> list[tuple]:
    return [(kg, cohort, lang, cat, 4) for kg in KGS for cohort in (2023, 2024) for lang in ("ru", "ky")
            for cat in (None, "privileged")]


def test_a_run_written_in_batches_while_the_rule_goes_on_gives_what_one_allocation_gives(pg_queue, monkeypatch):
    """The referrals are written batch by batch on the run's connection while
    the children are read on another: the same allocation, one audit row
    (numbered in the run's order), one fact and one audit record per
    referral, and a replay that matches."""
    from services.queue.usecases import allocation as use
    svc = pg_queue
    reset(svc)
    fill(svc, _many_children(200), _many_places())
    want = expected(svc)
    monkeypatch.setattr(use, "BATCH", 7)
    run = svc.allocation.run()
    assert len(run.issued) == len(want) > 7 * 10
    assert held(svc) == want
    assert svc.audit.check_register() == []
    assert all(r["matches"] for r in svc.audit.replay())
    with svc.sessions() as s:
        seqs = s.execute(sa.text("SELECT seq FROM allocation_audit ORDER BY seq")).scalars().all()
        facts = s.execute(sa.text("SELECT count(DISTINCT subject) FROM outbox WHERE type = 'referral.issued.v1'")
                          ).scalar()
        trail = s.execute(sa.text("SELECT count(*) FROM audit_trail WHERE action = 'referral.issued'")).scalar()
    assert seqs == list(range(len(want)))
    assert facts == trail == len(want)


def test_a_child_removed_while_the_runs_batches_are_written_leaves_nothing_of_the_run(pg_queue, monkeypatch):
    """The batches are one transaction: a child of the first batch removed
    meanwhile makes the run refuse itself at the end, and nothing of its
    earlier batches (referrals, facts, audit rows, the run's record) stays;
    the next run allocates without that child."""
    from services.queue.store.allocation import StaleRead
    from services.queue.usecases import allocation as use
    svc = pg_queue
    reset(svc)
    fill(svc, _many_children(120), _many_places())
    monkeypatch.setattr(use, "BATCH", 5)
    refer = use.Allocator._refer
    removed: list[str] = []

    def refer_and_remove(self, w, run_id, batch, seq, *args):
        if seq == 5 and not removed:  # the second batch: the first is written
            removed.append(batch[0].child_id)
            svc.entries.remove(removed[0], actor="t", reason="moved away")
        return refer(self, w, run_id, batch, seq, *args)
    monkeypatch.setattr(use.Allocator, "_refer", refer_and_remove)
    with pytest.raises(StaleRead):
        svc.allocation.run(attempts=1)
    with svc.sessions() as s:
        left = s.execute(sa.text(
            "SELECT (SELECT count(*) FROM referrals), (SELECT count(*) FROM allocation_audit), "
            "(SELECT count(*) FROM allocation_runs), (SELECT count(*) FROM outbox WHERE type = 'referral.issued.v1'), "
            "(SELECT count(*) FROM audit_trail WHERE action = 'referral.issued'), "
            "(SELECT count(*) FROM applications WHERE status = 'referred'), (SELECT sum(held) FROM places)")).one()
    assert tuple(left) == (0, 0, 0, 0, 0, 0, 0)
    monkeypatch.setattr(use.Allocator, "_refer", refer)
    want = expected(svc)
    svc.allocation.run()
    assert held(svc) == want and removed[0] not in want
    assert svc.audit.check_register() == []
