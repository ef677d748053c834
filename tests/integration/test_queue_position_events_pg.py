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


def queue(url: str) -> tuple[Queue, sa.Engine]:
    """The queue service on a fresh database, with KGS and 60 children who
    joined (the same ones for the same database state: a fixed seed)."""
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
    return svc, engine


def test_positions_published_on_postgresql_are_the_ones_the_parent_sees_and_only_changes(pg_url):
    svc, engine = queue(pg_url("queue_positions"))
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


def changes(svc: Queue) -> None:
    """Referrals, removals and a revoked privilege, as one run would meet
    them; in pools of both shares of two ("moon" is alone in the second)."""
    svc.places.publish("sun", 2023, "ru", 2, actor="kg")
    with svc.sessions() as s:
        at_moon = s.execute(sa.text("SELECT min(id) FROM applications WHERE status = 'queued' "
                                    "AND preferences[1] = 'moon'")).scalar_one()
    for child in ("c07", at_moon):
        svc.entries.remove(child, actor="parent")
    with svc.sessions() as s:
        privileged = s.execute(sa.text("SELECT min(id) FROM applications WHERE status = 'queued' "
                                       "AND category <> 'general'")).scalar_one()
    svc.entries.revoke_privilege(privileged, actor="sv", reason="forged")


def events_by_child(svc: Queue) -> dict[str, list[tuple]]:
    """Every position event of each child in the order written, all but its id."""
    with svc.sessions() as s:
        payloads = s.execute(sa.select(outbox.table.c.payload).where(outbox.table.c.type == CHANGED)
                             .order_by(outbox.table.c.seq)).scalars().all()
    out: dict[str, list[tuple]] = {}
    for payload in payloads:
        e = Event.from_json(payload)
        validate(e)
        out.setdefault(e.subject, []).append((e.type, e.source, e.time, e.dataschema, e.data))
    return out


def positions_table(svc: Queue) -> list[tuple]:
    with svc.sessions() as s:
        return [tuple(r) for r in s.execute(sa.text(
            "SELECT application_id, kindergarten_id, position FROM queue_positions ORDER BY application_id"))]


def statements_that_wrote(svc: Queue, after: int) -> int:
    """How many statements wrote the position events after seq `after`: each
    server-built batch has event ids of one prefix (kezek.outbox.batch_ids)."""
    with svc.sessions() as s:
        return s.execute(sa.text("SELECT count(DISTINCT left(event_id, 24)) FROM outbox WHERE type = :t AND seq > :s"),
                         {"t": CHANGED, "s": after}).scalar_one()


def assert_published_as_one(split: Queue, single: Queue) -> None:
    """Nothing left to publish, and each child's events and published
    position as the single publication's."""
    assert split.positions.publish() == 0
    assert events_by_child(split) == events_by_child(single)
    assert positions_table(split) == positions_table(single)


def last_seq(svc: Queue) -> int:
    with svc.sessions() as s:
        return s.execute(sa.text("SELECT coalesce(max(seq), 0) FROM outbox")).scalar_one()


def test_a_publication_split_into_shares_writes_exactly_the_events_of_a_single_one(pg_url):
    single, e1 = queue(pg_url("positions_single"))
    split, e2 = queue(pg_url("positions_split"))
    single.positions.shares = 1
    split.positions.shared_from = 1
    try:
        for svc in (single, split):
            svc.allocation.process_requests()
        seq = last_seq(split)
        for svc in (single, split):
            changes(svc)
            run = svc.allocation.process_requests()
            assert run.issued and run.positions_published > 0
        assert statements_that_wrote(split, seq) == 2, "the moves were written by both shares"
        assert statements_that_wrote(single, seq) == 1
        assert_published_as_one(split, single)
    finally:
        e1.dispose()
        e2.dispose()


@pytest.mark.parametrize("lost", ["sun", "moon"])  # share 0 (the caller's transaction), share 1 (one of its own)
def test_a_share_that_fails_leaves_its_pools_to_the_next_publication_and_the_other_shares_events_stand(
        pg_url, monkeypatch, lost):
    from services.queue.store import positions_pg

    single, e1 = queue(pg_url("positions_single"))
    split, e2 = queue(pg_url("positions_split"))
    single.positions.shares = 1
    split.positions.shared_from = 1
    publish_changed = positions_pg.publish_changed
    failed: list[list] = []

    def failing(s, pools, *args, **kwargs):
        if any(kg == lost for _, kg in pools):
            failed.append(pools)
            raise RuntimeError("the share's connection was lost")
        return publish_changed(s, pools, *args, **kwargs)

    try:
        for svc in (single, split):
            svc.allocation.process_requests()
            changes(svc)
        reference = single.allocation.process_requests().positions_published
        seq = last_seq(split)
        monkeypatch.setattr(positions_pg, "publish_changed", failing)
        with pytest.raises(RuntimeError, match="connection was lost"):
            split.allocation.process_requests()
        with split.sessions() as s:
            left = {tuple(r) for r in s.execute(sa.text("SELECT cohort, kindergarten_id FROM position_changes"))}
        assert failed and left == set(failed[0]), "the failed share's pools, and only those, are still marked"
        written = sum(1 for e in published(split, seq)[2])
        assert 0 < written < reference, "the other share's events were committed"

        monkeypatch.setattr(positions_pg, "publish_changed", publish_changed)
        assert split.positions.publish() == reference - written
        assert_published_as_one(split, single)
    finally:
        e1.dispose()
        e2.dispose()
