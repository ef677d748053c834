"""What many tests build the same way: a family applying (a mother in
Bishkek and her son), a clock the test moves, a service's migrated database, the queue's use cases over SQLite with a few
kindergartens, and the queue's API in front of them."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

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
