"""application.position_changed.v1: published after the change that moved a
child (join, removal, allocation, return to the general queue ...), only
for the children whose position differs from the one last published, with
the previous position; the notifications service turns a move into the top
ten into TOP_TEN_REACHED."""
from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from kezek.db import make_session_factory, unit_of_work
from kezek.events import Event, new_event
from services.queue.models import outbox
from services.queue.domain import JoinQueue
from tests.builders import migrated, sqlite_queue, sqlite_url

NOW = datetime(2027, 3, 1, 4, 0, tzinfo=UTC)
CHANGED = "application.position_changed.v1"


@pytest.fixture
def svc(tmp_path):
    with sqlite_queue(tmp_path, lambda: NOW) as service:
        yield service


def join(svc, cid, day, *, prefs=("sun",), cat="general", born="2024-06-15"):
    y, m, dd = born.split("-")
    svc.entries.join(JoinQueue(application_id=cid, pin=f"2{dd}{m}{y}{day:05d}", surname="Asanov", name="Aibek",
                             category=cat, language="ru", preferences=tuple(prefs), parent_id=f"p-{cid}",
                             queue_date=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day)), actor="parent:1")


def moves(svc) -> list[dict]:
    """The position events not yet looked at, by child."""
    with svc.sessions() as s:
        rows = s.execute(sa.select(outbox.table.c.seq, outbox.table.c.payload)
                         .where(outbox.table.c.type == CHANGED, outbox.table.c.seq > svc.seen)
                         .order_by(outbox.table.c.seq)).all()
    if rows:
        svc.seen = rows[-1][0]
    return [json.loads(p)["data"] for _, p in rows]


def by_child(events: list[dict]) -> dict[str, tuple]:
    assert len({e["application_id"] for e in events}) == len(events), "one event per child"
    return {e["application_id"]: (e["previous_position"], e["position"]) for e in events}


@pytest.fixture
def queue(svc):
    """a (1st), b (2nd), c (3rd) wait for sun; m waits for moon."""
    for i, cid in enumerate(("a", "b", "c")):
        join(svc, cid, i + 1)
    join(svc, "m", 4, prefs=("moon",))
    svc.seen = 0
    svc.allocation.process_requests()
    return svc


def test_joining_children_get_their_first_position_with_no_previous(queue):
    events = moves(queue)
    assert by_child(events) == {"a": (None, 1), "b": (None, 2), "c": (None, 3), "m": (None, 1)}
    a = next(e for e in events if e["application_id"] == "a")
    assert a["kindergarten_id"] == "sun" and a["kindergarten_name"] == "Sun" and a["parent_id"] == "p-a"


def test_child_that_moves_up_gets_one_event_with_its_previous_position_and_unchanged_children_none(queue):
    moves(queue)
    join(queue, "d", 10)        # behind everyone: nobody else moves
    queue.allocation.process_requests()
    assert by_child(moves(queue)) == {"d": (None, 4)}
    queue.entries.remove("b", actor="parent:1", reason="moved away")
    queue.allocation.process_requests()
    # a was ahead of b and m waits elsewhere: no event for them.
    assert by_child(moves(queue)) == {"c": (3, 2), "d": (4, 3)}


def test_published_positions_match_the_position_the_parent_sees(queue):
    moves(queue)
    join(queue, "e", 0, prefs=("moon", "sun"))      # earliest: ahead in sun too, though sun is not its first
    queue.allocation.process_requests()
    events = by_child(moves(queue))
    assert events == {"a": (1, 2), "b": (2, 3), "c": (3, 4), "e": (None, 1), "m": (1, 2)}
    for cid in ("a", "b", "c", "e", "m"):
        assert queue.views.positions(cid)[0].position == events[cid][1]


def test_allocation_moves_up_the_children_behind_the_referred_one_in_every_pool_it_waited_in(queue):
    join(queue, "e", 0, prefs=("moon", "sun"))
    queue.allocation.process_requests()
    moves(queue)
    queue.places.publish("moon", 2024, "ru", 1, actor="kg:moon")
    [issued] = queue.allocation.process_requests().issued
    assert issued.application_id == "e"
    # e left the queue: the sun children and m move up; e itself gets no event.
    assert by_child(moves(queue)) == {"a": (2, 1), "b": (3, 2), "c": (4, 3), "m": (2, 1)}


def test_revoked_privilege_moves_the_child_back_and_the_others_forward(queue):
    moves(queue)
    join(queue, "x", 20, cat="extraordinary")
    queue.allocation.process_requests()
    assert by_child(moves(queue)) == {"x": (None, 1), "a": (1, 2), "b": (2, 3), "c": (3, 4)}
    queue.entries.revoke_privilege("x", actor="supervisor:1", reason="forged")
    queue.allocation.process_requests()
    assert by_child(moves(queue)) == {"x": (1, 4), "a": (2, 1), "b": (3, 2), "c": (4, 3)}


def test_publication_is_idempotent_when_run_again_over_the_same_pools(queue):
    moves(queue)
    assert queue.positions.publish() == 0
    # A publication that crashed after its change is simply run again: the
    # marks are still there, the positions are the published ones.
    with queue.sessions() as s, s.begin():
        queue.ctx.within(s).positions_moved([(2024, "sun"), (2024, "moon")])
        queue.ctx.within(s).positions_moved(None)
    assert queue.positions.publish() == 0
    assert moves(queue) == []


def test_every_position_event_matches_its_schema(queue):
    from kezek.events import validate
    with queue.sessions() as s:
        for (payload,) in s.execute(sa.select(outbox.table.c.payload).where(outbox.table.c.type == CHANGED)):
            validate(Event.from_json(payload))


# --------------------------------------------- the parent hears of the top ten

@pytest.fixture
def notifications(tmp_path):
    from services.notifications.service import NotificationService

    with migrated("notifications", sqlite_url(tmp_path, "notifications")) as engine:
        yield NotificationService(make_session_factory(engine), tz=ZoneInfo("Asia/Bishkek"),
                                  cabinet_url="https://kezek.kg/cabinet", clock=lambda: NOW)


def deliver(notifications, queue_svc) -> None:
    """The queue's position events, relayed to the notifications service."""
    from services.notifications.models import outbox as n_outbox
    with queue_svc.sessions() as s:
        payloads = s.execute(sa.select(outbox.table.c.payload).where(outbox.table.c.type == CHANGED)
                             .order_by(outbox.table.c.seq)).scalars().all()
    for payload in payloads:
        event = Event.from_json(payload)
        with unit_of_work(notifications.sessions) as s:
            if n_outbox.claim(s, "notifications", event.id):
                notifications.handle(s, event)


def top_ten_messages(notifications, app_id):
    from services.notifications.models import Message
    with notifications.sessions() as s:
        return list(s.scalars(sa.select(Message).where(Message.kind == "top_ten_reached",
                                                       Message.application_id == app_id)))


def test_child_crossing_into_the_top_ten_gets_top_ten_reached(svc, notifications):
    for day in range(1, 12):
        join(svc, f"c{day:02d}", day)       # c11 is 11th
    svc.seen = 0
    with unit_of_work(notifications.sessions) as s:
        notifications.handle(s, new_event("application.received.v1", "c11", {
            "application_id": "c11", "parent_id": "p-c11", "locale": "ru", "email": "p@example.kg",
            "phone": "+996700123456", "child_name": "Айбек", "queue_date": "2026-01-12T00:00:00Z"},
            source="registration"))
    svc.allocation.process_requests()
    assert by_child(moves(svc))["c11"] == (None, 11)
    deliver(notifications, svc)
    assert top_ten_messages(notifications, "c11") == []
    svc.entries.remove("c03", actor="parent:1")
    svc.allocation.process_requests()
    assert by_child(moves(svc))["c11"] == (11, 10)
    deliver(notifications, svc)
    assert sorted(m.channel for m in top_ten_messages(notifications, "c11")) == ["email", "inapp"]
    # Moving on up inside the top ten is not news again.
    svc.entries.remove("c01", actor="parent:1")
    svc.allocation.process_requests()
    assert by_child(moves(svc))["c11"] == (10, 9)
    deliver(notifications, svc)
    assert len(top_ten_messages(notifications, "c11")) == 2
