"""Pooled PostgreSQL connections (kezek.db.ping_when_idle): pinged before use
only after lying idle in the pool, replaced when the ping finds them gone;
one handed back a moment ago is used at once, and if its server went away
meanwhile, only the transaction that meets it fails. A service's pool
(kezek.db.service_engine) keeps as many connections as KEZEK_DB_POOL_SIZE,
so work that size at once opens no new server process after the first."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from kezek.db import IDLE_PING_SECONDS, make_engine, ping_when_idle, service_engine
from kezek.settings import Settings
from tests.builders import Clock

pytestmark = pytest.mark.integration


@pytest.fixture
def engine(pg_url):
    clock = Clock(1000.0)          # time.monotonic's seconds
    engine = sa.create_engine(pg_url("ping"), pool_size=1, max_overflow=0)
    ping_when_idle(engine, clock=clock)
    pings = []
    ping = engine.dialect.do_ping
    engine.dialect.do_ping = lambda conn: pings.append(1) or ping(conn)
    engine.clock, engine.pings = clock, pings
    yield engine
    engine.dispose()


def backend_pid(engine) -> int:
    with engine.connect() as c:
        return c.execute(sa.text("SELECT pg_backend_pid()")).scalar()


def terminate(engine, pid: int) -> None:
    """Ends the server side of a pooled connection (as a restart would), from
    a connection of its own."""
    other = sa.create_engine(engine.url, poolclass=sa.pool.NullPool)
    with other.connect() as c:
        assert c.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    other.dispose()


def test_a_service_engine_pings_only_idle_connections(pg_url):
    engine = make_engine(pg_url("ping"))
    assert not engine.pool._pre_ping and engine.pool.dispatch.checkout
    engine.dispose()


def test_a_connection_back_in_the_pool_a_moment_ago_is_handed_out_without_a_ping(engine):
    first = backend_pid(engine)
    engine.clock.now += IDLE_PING_SECONDS - 0.5
    assert backend_pid(engine) == first
    assert engine.pings == []


def test_a_connection_idle_for_the_bound_is_pinged_and_kept_when_it_answers(engine):
    first = backend_pid(engine)
    engine.clock.now += IDLE_PING_SECONDS
    assert backend_pid(engine) == first
    assert engine.pings == [1]


def test_an_idle_connection_whose_server_went_away_is_replaced_before_use(engine):
    gone = backend_pid(engine)
    terminate(engine, gone)
    engine.clock.now += IDLE_PING_SECONDS + 1
    assert backend_pid(engine) != gone          # no error: the ping found it gone, a new one was made
    assert engine.pings == [1]


def test_a_connection_lost_moments_after_use_fails_one_transaction_and_the_next_has_a_new_one(engine):
    gone = backend_pid(engine)
    terminate(engine, gone)
    with pytest.raises(sa.exc.OperationalError) as failed:
        backend_pid(engine)
    assert failed.value.connection_invalidated
    assert backend_pid(engine) != gone
    assert engine.pings == []


def backend_pids_at_once(engine, n: int) -> set[int]:
    """The server processes of `n` connections held at the same time."""
    conns = [engine.connect() for _ in range(n)]
    try:
        return {c.execute(sa.text("SELECT pg_backend_pid()")).scalar() for c in conns}
    finally:
        for c in conns:
            c.close()


def test_a_service_pool_keeps_the_connections_of_work_its_size_at_once(pg_url):
    # Eight requests at once (the notifications API's receipts in hand): the
    # SQLAlchemy default (5 kept) closed three after each burst and opened
    # three new server processes for the next.
    engine = service_engine(Settings(_env_file=None, db_pool_size=8), "gateway", url=pg_url("pool"))
    try:
        first = backend_pids_at_once(engine, 8)
        assert len(first) == 8
        assert backend_pids_at_once(engine, 8) == first
    finally:
        engine.dispose()


def test_a_burst_beyond_the_pool_is_served_and_the_pool_then_keeps_its_size(pg_url):
    engine = service_engine(Settings(_env_file=None, db_pool_size=4), "gateway", url=pg_url("pool"))
    try:
        burst = backend_pids_at_once(engine, 8)       # as many again are opened for a burst
        assert len(burst) == 8
        kept = backend_pids_at_once(engine, 4)
        assert kept <= burst and engine.pool.checkedin() == 4
    finally:
        engine.dispose()
