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


def record(session: Session, event) -> None:
    data = event.data
    session.merge(PositionPoint(event_id=event.id, application_id=data["application_id"],
                                kindergarten_id=data.get("kindergarten_id"), position=int(data["position"]),
                                at=event.time))
    readmodel.bump(session, [readmodel.application_key(data["application_id"])])   # the chart the copy holds


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
                              sessions=sessions, outbox=outbox, handle=record,
                              types=("application.position_changed.v1",), **kafka_config)
