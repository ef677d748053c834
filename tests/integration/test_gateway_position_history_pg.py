"""The cabinet's position history on PostgreSQL: a position the cabinet
showed itself (`seen-<uuid>`, 41 characters) is kept beside the queue's
position events (GET /api/v1/me failed with StringDataRightTruncation on
varchar(36) right after a queue move)."""
from __future__ import annotations

import pytest

from kezek.db import make_engine, make_session_factory
from kezek.events import new_event
from kezek.migrations import upgrade
from services.gateway import history

pytestmark = pytest.mark.integration


def test_cabinet_keeps_the_positions_it_showed_beside_the_queues_events_on_postgres(pg_url):
    url = pg_url("gateway")
    upgrade("gateway", url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    try:
        moved = new_event("application.position_changed.v1", "application:app-1", {
            "application_id": "app-1", "position": 7, "previous_position": 9, "kindergarten_id": "kg-12",
        }, source="queue")
        with sessions() as s, s.begin():
            history.record(s, moved)
        history.seen(sessions, "app-1", "kg-12", 5)   # the queue moved again: the cabinet shows 5
        history.seen(sessions, "app-1", "kg-12", 5)   # shown again, unchanged: no new point
        assert [p["position"] for p in history.points(sessions, "app-1")] == [7, 5]
    finally:
        engine.dispose()
