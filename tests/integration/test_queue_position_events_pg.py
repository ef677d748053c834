"""The set-based publication of positions on real PostgreSQL (one SQL
statement: window over the unnested preferences, compare, upsert, outbox)
publishes exactly the positions the parent sees, only when they change,
in events that match their schema."""
from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from kezek.db import make_engine, make_session_factory
from kezek.events import Event, dataschema_for, validate
from kezek.migrations import upgrade
from services.queue.models import outbox
from services.queue.domain import JoinQueue
from services.queue.usecases import Queue
from services.queue.usecases.positions import event_data

pytestmark = pytest.mark.integration

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)
KGS = ("sun", "moon", "star", "sky", "sea")
CHANGED = "application.position_changed.v1"


def published(svc: Queue, after: int = 0) -> tuple[dict[str, int], int, list[dict]]:
    """The last published position of each child, the last outbox seq, the new events' data."""
    with svc.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.seq, outbox.table.c.payload)
                         .where(outbox.table.c.type == CHANGED).order_by(outbox.table.c.seq)).all()
    last: dict[str, int] = {}
    new = []
    ids = set()
    for seq, payload in rows:
        event = Event.from_json(payload)
        validate(event)
        # Built by the database (Outbox.add_from_query): the envelope the
        # service's other events carry, an id of its own each.
        assert event.subject == f"application:{event.data['application_id']}"
        assert (event.source, event.type, event.dataschema) == ("/kezek/queue", CHANGED, dataschema_for(CHANGED))
        assert event.id not in ids and str(uuid.UUID(event.id)) == event.id
        ids.add(event.id)
        last[event.data["application_id"]] = event.data["position"]
        if seq > after:
            new.append(event.data)
    return last, rows[-1][0] if rows else 0, new


def check_positions(svc: Queue, last: dict[str, int]) -> None:
    with svc.sessions() as s:
        waiting = s.execute(sa.select(sa.text("id FROM applications WHERE status = 'queued'"))).scalars().all()
    assert waiting
    for app_id in waiting:
        assert last[app_id] == svc.views.positions(app_id)[0].position, app_id


def test_positions_published_on_postgresql_are_the_ones_the_parent_sees_and_only_changes(pg_url):
    url = pg_url("queue_positions")
    upgrade("queue", url)
    engine = make_engine(url)
    svc = Queue(make_session_factory(engine), clock=lambda: NOW)
    for kid in KGS:
        svc.kindergartens.save({"id": kid, "name": kid.title(), "district": "d", "languages": ["ru", "ky"]},
                              actor="admin")
    rnd = random.Random(7)
    for i in range(60):
        born = date(2023 + i % 2, 1 + i % 12, 1 + i % 27)
        svc.entries.join(JoinQueue(
            application_id=f"c{i:02d}", pin=f"2{born:%d%m%Y}{i:05d}", surname="S", name="N",
            category=rnd.choice(("general", "general", "privileged", "extraordinary")),
            language=rnd.choice(("ru", "ky")), preferences=tuple(rnd.sample(KGS, rnd.randint(1, 3))),
            parent_id=f"p{i}", queue_date=datetime(2025, 1, 1, tzinfo=UTC) + timedelta(hours=rnd.randrange(5000))),
            actor="t")
    try:
        svc.allocation.process_requests()
        last, seq, first = published(svc)
        assert len(first) == 60 and all(e["previous_position"] is None for e in first)
        # The data the Python path makes (positions.event_data), key for key.
        for e in first:
            assert e == event_data(e["application_id"], f"p{int(e['application_id'][1:])}", e["kindergarten_id"],
                                   e["kindergarten_id"].title(), e["position"], None)
        check_positions(svc, last)

        # A referral, a removal and a revoked privilege in one go.
        svc.places.publish("sun", 2023, "ru", 2, actor="kg")
        svc.entries.remove("c07", actor="parent")
        svc.entries.revoke_privilege(next(a for a in last if svc.views.application(a)["category"] != "general"
                                  and svc.views.application(a)["status"] == "queued"), actor="sv", reason="forged")
        run = svc.allocation.process_requests()
        assert run.issued and run.positions_published > 0
        before = dict(last)
        last, seq2, moved = published(svc, seq)
        check_positions(svc, last)
        # Only children whose position changed, each once, with what it was.
        assert len({e["application_id"] for e in moved}) == len(moved) == run.positions_published
        for e in moved:
            assert e["previous_position"] == before[e["application_id"]] != e["position"]
            assert e == event_data(e["application_id"], f"p{int(e['application_id'][1:])}", e["kindergarten_id"],
                                   e["kindergarten_id"].title(), e["position"], e["previous_position"])
        assert any(before[a] == last[a] for a in before if a in last), "some children did not move"

        # Run again, or after a policy change that keeps the ranks: nothing new.
        assert svc.positions.publish() == 0
        svc.policy.change({"stoplist_days": 12}, actor="admin", reason="decree")
        svc.allocation.process_requests()
        assert published(svc, seq2)[2] == []
    finally:
        engine.dispose()
