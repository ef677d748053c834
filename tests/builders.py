"""What many tests build the same way: a family applying (a mother in
Bishkek and her son), a clock the test moves, a service's migrated database, the queue's use cases over SQLite with a few
kindergartens, and the queue's API in front of them; and what an engine ran (`ran_on`)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from kezek.db import make_engine, make_session_factory
from tests.migrated import upgrade
from kezek.settings import Settings
from tests.fakes.tokens import Callers


CHILD = {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек"}
MOTHER = {
    "role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
    "document_type": "id_card", "document_number": "ID1234567", "document_issued_on": "2020-05-01",
    "address": {"region": "41711000000000", "district": "41711210000000", "settlement": "41711000000001",
                "street": "улица Киевская", "house": "12"},
    "phone": "+996 555 123 456", "email": "aigul@example.kg",
}


class Clock:
    """The moment a service reads when it asks for the time; the test sets it."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


def sqlite_url(folder: Path, service: str) -> str:
    return f"sqlite:///{folder / f'{service}.db'}"


@contextmanager
def migrated(service: str, url: str) -> Iterator[Engine]:
    """An engine on `url` once the service's migrations have run there."""
    upgrade(service, url)
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def kindergarten(kid: str, **fields) -> dict:
    """A kindergarten as the queue's admin saves it."""
    return {"id": kid, "name": kid.title(), "district": "Bishkek/Leninsky", "languages": ["ru"], **fields}


SUN_AND_MOON = (kindergarten("sun"), kindergarten("moon"))


@contextmanager
def sqlite_queue(folder: Path, clock, kindergartens: Iterable[dict] = SUN_AND_MOON, **options):
    """The queue's use cases on a fresh SQLite database, with these kindergartens."""
    from services.queue.usecases import Queue

    with migrated("queue", sqlite_url(folder, "queue")) as engine:
        queue = Queue(make_session_factory(engine), clock=clock, **options)
        for record in kindergartens:
            queue.kindergartens.save(record, actor="admin:1")
        yield queue


@contextmanager
def queue_api(folder: Path, queue) -> Iterator[TestClient]:
    """The queue's HTTP API over `queue`: `c.service` is the queue, `c.as_` signs as each caller."""
    from services.queue.api import create_app

    settings = Settings(state_dir=folder)
    with TestClient(create_app(settings, queue=queue)) as c:
        c.service, c.as_ = queue, Callers(settings, "queue")
        yield c


@dataclass
class Ran:
    """What an engine ran inside `with ran_on(engine) as ran:`: each
    statement on one line in upper case, whether it ran as executemany, the
    transactions begun and the commits."""
    statements: list[str] = field(default_factory=list)
    many: list[bool] = field(default_factory=list)
    begins: int = 0
    commits: int = 0

    def selects(self, *words: str) -> list[str]:
        return [st for st in self.statements if st.startswith("SELECT") and all(w in st for w in words)]

    def inserts(self) -> list[str]:
        """The tables inserted into, in order."""
        return [st.split()[2] for st in self.statements if st.startswith("INSERT INTO")]


@contextmanager
def ran_on(engine: Engine) -> Iterator[Ran]:
    ran = Ran()

    def seen(conn, cursor, statement, parameters, context, executemany):
        ran.statements.append(" ".join(statement.split()).upper())
        ran.many.append(executemany)

    def begun(conn):
        ran.begins += 1

    def committed(conn):
        ran.commits += 1
    events = (("before_cursor_execute", seen), ("begin", begun), ("commit", committed))
    for name, fn in events:
        sa.event.listen(engine, name, fn)
    try:
        yield ran
    finally:
        for name, fn in events:
            sa.event.remove(engine, name, fn)
