"""The allocation's announcement on real PostgreSQL: each referral's
referral.issued.v1 fact and audit row built by the database
(store/allocation_pg.announce) are the ones the Python path
(store/allocation.announce) writes for the same allocation."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory
from kezek.events import Event, validate
from kezek.migrations import upgrade
from kezek.tracing import continued
from services.queue.domain import JoinQueue
from services.queue.models import audit_trail, outbox
from services.queue.store import allocation as generic, allocation_pg
from services.queue.usecases import Queue

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)
ISSUED = "referral.issued.v1"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
AUDIT_FIELDS = ("at", "kind", "actor", "actor_role", "via", "action", "subject", "district", "outcome", "reason",
                "details", "request_id")


def trace_id(traceparent: str | None) -> str | None:
    return traceparent.split("-")[1] if traceparent else None


def allocated(url: str) -> tuple[list[Event], list[dict]]:
    """One allocation of the same queue in a new database, within a trace:
    its referral.issued facts and its referral.issued audit rows."""
    upgrade("queue", url)
    engine = make_engine(url)
    svc = Queue(make_session_factory(engine), clock=lambda: NOW)
    try:
        # One kindergarten with an address, one without.
        svc.kindergartens.save({"id": "sun", "name": "Sun", "district": "d", "address": "Chui 1",
                                "languages": ["ru", "ky"]}, actor="admin")
        svc.kindergartens.save({"id": "moon", "name": "Moon", "district": "d", "languages": ["ru", "ky"]},
                               actor="admin")
        cats = ("general", "privileged", "extraordinary")
        for i in range(12):
            born = date(2024, 1 + i % 12, 1 + i)
            svc.entries.join(JoinQueue(
                application_id=f"c{i:02d}", pin=f"2{born:%d%m%Y}{i:05d}", surname="S", name="N",
                category=cats[i % 3], language="ru", preferences=(("sun", "moon") if i % 2 else ("moon", "sun")),
                # A child registered by the office has no parent account.
                parent_id=None if i % 5 == 0 else f"p{i}",
                queue_date=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=i)), actor="t")
        svc.places.publish("sun", 2024, "ru", 4, actor="kg:sun")
        svc.places.publish("moon", 2024, "ru", 3, actor="kg:moon")
        svc.places.publish("moon", 2024, "ru", 2, actor="kg:moon", for_category="privileged")
        with continued({"traceparent": TRACE}, "allocation"):
            run = svc.allocation.run()
        assert len(run.issued) == 9
        with svc.sessions() as s:
            facts = [Event.from_json(p) for p in s.scalars(
                sa.select(outbox.table.c.payload).where(outbox.table.c.type == ISSUED).order_by(outbox.table.c.seq))]
            t = audit_trail.table
            trail = [dict(r._mapping) for r in s.execute(
                sa.select(*(t.c[f] for f in AUDIT_FIELDS)).where(t.c.action == "referral.issued").order_by(t.c.id))]
        return facts, trail
    finally:
        engine.dispose()


def test_the_facts_and_audit_rows_postgresql_builds_for_an_allocation_are_the_ones_python_builds(
        pg_url, monkeypatch):
    built, built_trail = allocated(pg_url("announce_sql"))
    monkeypatch.setattr(allocation_pg, "announce", generic.announce)
    python, python_trail = allocated(pg_url("announce_python"))

    assert len(built) == len(python) == 9
    assert len({e.id for e in built + python}) == 18
    for b, p in zip(built, python):
        validate(b)
        # Each allocation runs in a span of its own when a tracer provider is
        # installed (an earlier test in the same worker may install one), so
        # the facts carry the trace's id and the span each run made.
        assert b.model_dump(exclude={"id", "traceparent"}) == p.model_dump(exclude={"id", "traceparent"})
        assert trace_id(b.traceparent) == trace_id(p.traceparent) == trace_id(TRACE)
    assert {e.data.get("parent_id") for e in built} >= {None, "p1"}
    assert {e.data.get("kindergarten_address") for e in built} == {"Chui 1", None}
    assert {e.data["needs_confirmation"] for e in built} == {True, False}
    assert built_trail == python_trail and len(built_trail) == 9
