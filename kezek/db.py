"""Engines, sessions and the unit of work. Each service owns its database:
one SQLite file under the state folder by default, one PostgreSQL database
(kezek_<service>) in production and in the integration tests."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import event
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
    """The engine of `service`'s own database with its key ring (kezek/sealing.py)."""
    return make_engine(url or settings.database_url_for(service), keyring=settings.sealing_keyring(service),
                       **kwargs)


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
    kwargs.setdefault("pool_pre_ping", True)
    return sa.create_engine(url, **kwargs)


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
