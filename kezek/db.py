"""Engines, sessions and the unit of work. Each service owns its database:
one SQLite file under the state folder by default, one PostgreSQL database
(kezek_<service>) in production and in the integration tests."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from kezek import sealing


def make_engine(url: str, *, keyring: sealing.Keyring | None = None, **kwargs) -> Engine:
    """An engine whose sealed columns use `keyring` (the service's,
    `Settings.keyring_for`); without one, the development ring when a
    sealed column is first used (refused in production)."""
    engine = _engine(url, **kwargs)
    sealing.attach(engine, keyring)
    return engine


def service_engine(settings, service: str, *, url: str | None = None, **kwargs) -> Engine:
    """The engine of `service`'s own database with its key ring (kezek/sealing.py).
    On PostgreSQL its pool keeps `settings.db_pool_size` connections and
    opens as many more for a burst: a pool smaller than the work a process
    does at once opens a connection (a new server process) and closes it
    again for every request beyond it."""
    url = url or settings.database_url_for(service)
    if not url.startswith("sqlite"):
        kwargs = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_pool_size, **kwargs}
    return make_engine(url, keyring=settings.sealing_keyring(service), **kwargs)


def _engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):
            # pysqlite defers BEGIN on its own; turn that off and take the
            # write lock at BEGIN (below), so writers queue instead of failing.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    ping_idle = not kwargs.get("pool_pre_ping", False)
    engine = sa.create_engine(url, **kwargs)
    if ping_idle:
        ping_when_idle(engine)
    return engine


# A pooled connection is pinged before it is handed out only when it has lain
# idle in the pool at least this long (seconds).
IDLE_PING_SECONDS = 5.0


def ping_when_idle(engine: Engine, idle: float = IDLE_PING_SECONDS, clock=time.monotonic) -> None:
    """Pings a pooled PostgreSQL connection (SELECT 1) before handing it out
    only if it lay idle in the pool for `idle` seconds or more, and replaces
    it if the ping fails (the database restarted, a firewall dropped it).
    The pool's own pre-ping pinged at every checkout: a round trip before
    every transaction of every service, 8-12% of a busy consumer's and of
    registration's samples. A connection handed back moments ago was
    working then; if the server went away since, the transaction's first
    statement fails, SQLAlchemy takes it as a disconnect and replaces every
    connection the pool had before, and the caller's retry (a consumer's
    batch, a relay's round, a client's request) runs on a new one."""
    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):
        record.info["checked_in_at"] = clock()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):
        at = record.info.pop("checked_in_at", None)
        if at is None or clock() - at < idle:
            return                  # new, or back in the pool a moment ago
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as error:
            raise exc.DisconnectionError(f"idle connection gone: {error!r}") from error


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: state changes and their outbox rows commit together."""
    with sessions() as session, session.begin():
        yield session


@contextmanager
def _postgres_admin(url: str) -> Iterator[tuple[sa.Connection, str] | None]:
    """A connection to the cluster's `postgres` database and the name `url`
    names; None for SQLite, whose file creates itself."""
    u = make_url(url)
    if u.get_backend_name() != "postgresql":
        yield None
        return
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            yield conn, u.database
    finally:
        admin.dispose()


def ensure_database(url: str) -> None:
    """Creates a PostgreSQL database if it is missing (SQLite creates itself)."""
    with _postgres_admin(url) as admin:
        if admin is not None:
            conn, name = admin
            if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))


def drop_database(url: str) -> None:
    with _postgres_admin(url) as admin:
        if admin is not None:
            conn, name = admin
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def take_rows(session: Session, key: sa.ColumnElement, payload: sa.ColumnElement, where: sa.ColumnElement,
              order_by: sa.ColumnElement) -> list:
    """The `payload`s of the rows `where` selects, in `order_by`'s order,
    deleted in one statement (by their `key`) in the same transaction: what
    a consumer parked for a subject, taken off to be applied now (one that
    must wait again is parked anew). `payload` may be a tuple of columns:
    each row's values then come as a tuple."""
    columns = payload if isinstance(payload, tuple) else (payload,)
    rows = session.execute(sa.select(key, *columns).where(where).order_by(order_by)).all()
    if rows:
        table = key.table
        session.execute(sa.delete(table).where(key.in_([r[0] for r in rows]))
                        .execution_options(synchronize_session=False))
    return [tuple(r[1:]) if isinstance(payload, tuple) else r[1] for r in rows]


def aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every moment stored is UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def utc(t: datetime) -> datetime:
    """A moment as stored: UTC (SQLite keeps the wall time it is given)."""
    if t.tzinfo is None:
        raise ValueError("a moment must carry its time zone")
    return t.astimezone(UTC)
