"""An application's life in the queue ends (removed, aged out, enrolled,
refused, left): `application.closed.v1`, in the transaction of the change
that ends it. Every service that holds the family's data learns it from
that one fact and keeps its own retention clock from `closed_at` (its own
data, its own decision: kezek/retention.py)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from services.queue.models import retention_clock
from services.queue.store.times import utc
from services.queue.usecases.work import UnitOfWork

CLOSED = "application.closed.v1"
OUTCOMES = ("removed", "aged_out", "enrolled", "left", "refused")


def closed_data(app_id: str, parent_id: str | None, outcome: str, at: datetime) -> dict:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    return {"application_id": app_id, "parent_id": parent_id, "outcome": outcome, "closed_at": utc(at).isoformat()}


def closed(w: UnitOfWork, app_id: str, parent_id: str | None, outcome: str, at: datetime) -> None:
    """The fact, and the queue's own retention clock (the queue is the
    service that decides the closing, so it does not wait for its own fact)."""
    w.emit(CLOSED, f"application:{app_id}", closed_data(app_id, parent_id, outcome, at), time=at)
    retention_clock.closed(w.s, [(app_id, parent_id, outcome, at)])


def closed_many(w: UnitOfWork, rows: Iterable[tuple[str, str | None, datetime]], outcome: str) -> int:
    """(application id, parent id, closed at) of many applications closed one way."""
    rows = list(rows)
    retention_clock.closed(w.s, [(app_id, parent_id, outcome, at) for app_id, parent_id, at in rows])
    return w.emit_many(CLOSED, ((f"application:{app_id}", closed_data(app_id, parent_id, outcome, at))
                                for app_id, parent_id, at in rows))
