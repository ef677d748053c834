"""The position history behind the cabinet's chart: the gateway keeps each
application.position_changed.v1 the queue publishes (idempotently: one
point per event id) and reads them back for the parent's own applications."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from kezek.consumer import IdempotentConsumer
from services.gateway import readmodel
from services.gateway.models import PositionPoint, outbox

CONSUMER_NAME = "gateway-cabinet"
MAX_POINTS = 60


def _point(event) -> dict:
    data = event.data
    return {"event_id": event.id, "application_id": data["application_id"],
            "kindergarten_id": data.get("kindergarten_id"), "position": int(data["position"]), "at": event.time}


def record(session: Session, event) -> None:
    record_many(session, [event])


def record_many(session: Session, events: list) -> None:
    """The points of a batch of (fresh) events: one insert for the new ones
    and one bump of the charts they change (a national run sends hundreds of
    thousands; a merge and a bump each took three statements per event). A
    point already kept under the event's id (the consumer's claims pruned
    since) is written over, as the merge did."""
    points = {p["event_id"]: p for p in map(_point, events)}
    if not points:
        return
    kept = set(session.scalars(sa.select(PositionPoint.event_id)
                               .where(PositionPoint.event_id.in_(list(points)))).all())
    for event_id in kept:
        session.merge(PositionPoint(**points.pop(event_id)))
    if points:
        session.execute(sa.insert(PositionPoint), list(points.values()))
    readmodel.bump(session, [readmodel.application_key(e.data["application_id"]) for e in events])   # the charts the copies hold


def seen(sessions: sessionmaker[Session], application_id: str, kindergarten_id: str | None, position: int) -> None:
    """The position the cabinet has just shown, kept when it differs from the
    last point: the chart has a history even where the queue publishes no
    position_changed events (they are merged by time)."""
    with sessions() as s, s.begin():
        last = s.execute(sa.select(PositionPoint.position).where(PositionPoint.application_id == application_id)
                         .order_by(PositionPoint.at.desc()).limit(1)).scalar()
        if last != position:
            s.add(PositionPoint(event_id=f"seen-{uuid.uuid4()}", application_id=application_id,
                                kindergarten_id=kindergarten_id, position=position, at=datetime.now(UTC)))


def points(sessions: sessionmaker[Session], application_id: str) -> list[dict]:
    with sessions() as s:
        rows = s.execute(sa.select(PositionPoint.at, PositionPoint.position)
                         .where(PositionPoint.application_id == application_id)
                         .order_by(PositionPoint.at.desc()).limit(MAX_POINTS)).all()
    return [{"at": (at if at.tzinfo else at.replace(tzinfo=UTC)).isoformat(), "position": p}
            for at, p in reversed(rows)]


def make_consumer(sessions: sessionmaker[Session], bootstrap: str, prefix: str = "kezek",
                  **kafka_config) -> IdempotentConsumer:
    return IdempotentConsumer(name=CONSUMER_NAME, topics=[f"{prefix}.application"], bootstrap=bootstrap,
                              sessions=sessions, outbox=outbox, handle_many=record_many,
                              types=("application.position_changed.v1",), **kafka_config)
