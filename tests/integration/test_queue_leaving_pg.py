"""Children leaving and kindergartens closing on real PostgreSQL: a child
who leaves while allocations run keeps every place counted and the freed
places go to the children waiting; the figures' SQL (median, array overlap)
answers; the migration of issue 19 goes up and down with a child who left."""
from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from kezek.db import make_engine, make_session_factory
from kezek.migrations import alembic_config, upgrade
from services.queue.domain import JoinQueue
from services.queue.usecases import Queue

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)


def pin(born: date, serial: int) -> str:
    return f"2{born:%d%m%Y}{serial:05d}"


def queue_on(url: str) -> tuple[Queue, sa.Engine]:
    upgrade("queue", url)
    engine = make_engine(url, pool_size=10)
    svc = Queue(make_session_factory(engine), clock=lambda: NOW)
    for kid, district in (("sun", "41711210000000"), ("moon", "41711220000000")):
        svc.kindergartens.save({"id": kid, "name": kid, "district": district, "languages": ["ru"]}, actor="admin")
    return svc, engine


def enrol_all(svc: Queue, n: int, kg: str = "sun") -> list[str]:
    for i in range(n):
        svc.entries.join(JoinQueue(application_id=f"e{i:03d}", pin=pin(date(2024, 1, 1), i), surname="S",
                                   name="N", category="general", language="ru", preferences=(kg,),
                                   queue_date=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=i)), actor="t")
    svc.places.publish(kg, 2024, "ru", n, actor="t")
    issued = svc.allocation.run().issued
    for ref in issued:
        svc.referrals.record_enrolment(key=f"enrol-{ref.referral_id}", referral_id=str(ref.referral_id),
                                       application_id=ref.application_id, at=NOW)
    return [ref.application_id for ref in issued]


def test_children_leaving_while_allocations_run_keep_every_place_counted(pg_url):
    svc, engine = queue_on(pg_url("leaving"))
    try:
        enrolled = enrol_all(svc, 12)
        for i in range(30):
            svc.entries.join(JoinQueue(application_id=f"w{i:03d}", pin=pin(date(2024, 2, 1), i), surname="S",
                                       name="N", category="general", language="ru", preferences=("sun",),
                                       queue_date=datetime(2025, 6, 1, tzinfo=UTC) + timedelta(hours=i)), actor="t")
        errors: list[BaseException] = []
        barrier = threading.Barrier(3)

        def leave():
            barrier.wait()
            for app in enrolled[:8]:
                svc.leaving.leave(app, actor="kindergarten:k1", kindergarten="sun")

        def allocate():
            barrier.wait()
            for _ in range(15):
                svc.allocation.run()

        def guarded(fn):
            try:
                fn()
            except BaseException as exc:    # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=guarded, args=(f,)) for f in (leave, allocate, allocate)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        svc.allocation.run()
        assert svc.audit.check_register() == []
        with svc.sessions() as s:
            free, held, taken = s.execute(sa.text("SELECT sum(free), sum(held), sum(enrolled) FROM places")).one()
            left = s.execute(sa.text("SELECT count(*) FROM applications WHERE status = 'left'")).scalar()
        assert (free, held, taken, left) == (0, 8, 4, 8)
        figures = svc.figures.of("41711210000000")
        assert figures["waiting_total"] == 22 and figures["median_days_waiting"] is not None
        assert figures["referrals"]["left"] == 8
    finally:
        engine.dispose()


def test_the_migration_goes_down_and_up_again_with_a_child_who_left(pg_url):
    url = pg_url("leaving_migration")
    svc, engine = queue_on(url)
    try:
        [child] = enrol_all(svc, 1)
        svc.leaving.leave(child, actor="admin")
        svc.kindergartens.close("moon", actor="admin")
        command.downgrade(alembic_config("queue", url), "queue_0008_audit_trail")
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT status FROM applications")).scalar() == "removed"
        upgrade("queue", url)
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM kindergartens WHERE closed_at IS NULL")).scalar() == 2
    finally:
        engine.dispose()
