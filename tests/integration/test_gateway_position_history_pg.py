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


def test_a_batch_of_position_events_keeps_one_point_each_and_bumps_each_chart_once_on_postgres(pg_url):
    """The consumer takes a poll's position events at once: every event is
    one point (one already kept under its id is written over, as a merge
    did), and each application's chart is bumped once for the batch."""
    import sqlalchemy as sa

    from services.gateway import readmodel
    from services.gateway.models import CabinetChange, PositionPoint

    url = pg_url("gateway")
    upgrade("gateway", url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)

    def moved(app, position):
        return new_event("application.position_changed.v1", f"application:{app}", {
            "application_id": app, "position": position, "previous_position": position + 1,
            "kindergarten_id": "kg-12"}, source="queue")

    try:
        kept = moved("app-1", 9)
        with sessions() as s, s.begin():
            history.record(s, kept)
            before = s.scalar(sa.select(sa.func.count()).select_from(CabinetChange))
        again = kept.model_copy(update={"data": {**kept.data, "position": 8}})
        batch = [again, moved("app-1", 7), moved("app-2", 3), moved("app-1", 6)]
        with sessions() as s, s.begin():
            history.record_many(s, batch)
        assert [p["position"] for p in history.points(sessions, "app-1")] == [8, 7, 6]
        assert [p["position"] for p in history.points(sessions, "app-2")] == [3]
        with sessions() as s:
            assert s.scalar(sa.select(sa.func.count()).select_from(PositionPoint)) == 4
            bumped = s.scalars(sa.select(CabinetChange.key).order_by(CabinetChange.seq).offset(before)).all()
        assert sorted(bumped) == [readmodel.application_key("app-1"), readmodel.application_key("app-2")]
    finally:
        engine.dispose()


def test_the_read_model_asks_the_counters_on_a_connection_of_its_own_and_opens_another_after_a_loss_on_postgres(
        pg_url):
    import asyncio

    import sqlalchemy as sa

    from services.gateway import readmodel

    url = pg_url("gateway")
    upgrade("gateway", url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    rm = readmodel.CabinetReadModel(sessions, 60)
    try:
        copies = {}
        for family in ("a", "b"):
            keys = [readmodel.parent_key(family), readmodel.application_key(f"app-{family}")]
            copies[family] = readmodel.Copy(at=rm.clock(), stamps=readmodel.versions(sessions, keys), me={})
            rm.keep(family, copies[family])
        assert asyncio.run(rm.checked("a")) is copies["a"]
        readmodel.bump_now(sessions, [readmodel.application_key("app-a")])
        assert asyncio.run(rm.checked("a")) is None                 # changed since it was read
        assert asyncio.run(rm.checked("b")) is copies["b"]
        backend = rm._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(sa.exc.DBAPIError):                      # that read fails as its own query would
            asyncio.run(rm.checked("b"))
        assert asyncio.run(rm.checked("b")) is copies["b"]          # the next opens a connection again
    finally:
        rm.close()
        engine.dispose()
