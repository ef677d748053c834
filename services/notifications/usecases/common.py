"""What the notifications use cases share: message ids, the actors that
are not people, the shapes the dispatcher passes to transports, and
portable SQL helpers."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from kezek.db import aware
from kezek.trust import Principal, service_principal
from services.notifications import domain as d

# Message ids derive from (event, channel): a redelivered event can only ever
# name the message it already made.
MESSAGE_NS = uuid.UUID("6f1c1f64-3a55-4c5e-9a0e-0b8f6d7c2a11")
# Who acts when nobody asked: the consumer, the activity, the dispatcher.
SYSTEM = service_principal("notifications")
# The SMS provider, known by the signature of its receipts (signature.py).
SMS_PROVIDER = Principal(actor="provider:sms", role="provider", via="notifications")


def utcnow() -> datetime:
    return datetime.now(UTC)


def when(value: Any) -> datetime | None:
    if value is None:
        return None
    return aware(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def message_id(event_id: str, channel: d.Channel) -> str:
    return str(uuid.uuid5(MESSAGE_NS, f"{event_id}:{channel.value}"))


@dataclass(frozen=True)
class Outgoing:
    """A claimed message, as a transport sees it."""
    id: str
    channel: d.Channel
    address: str
    locale: str
    subject: str | None
    body: str
    urgent: bool
    expires_at: datetime | None
    attempts: int


@dataclass(frozen=True)
class Attempt:
    outcome: d.Outcome
    provider_ref: str | None = None
    error: str | None = None


def insert_for(session: Session, model):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


_UPSERTS: dict[tuple, Any] = {}


def upsert(session: Session, model, values: dict | list[dict], keys: list[str], insert_only: dict | None = None) -> None:
    """Insert or update by key in one statement (two consumers may see the
    same parent at once). The statement is built once per table and shape
    and given the values as parameters: built with the values inline, each
    call cost a new statement, its cache key and its columns (most of the
    consumer's CPU per event of an import). A list of rows of one shape
    goes in one execution (the driver pipelines them)."""
    rows = values if isinstance(values, list) else [values]
    dialect = session.get_bind().dialect.name
    updated = tuple(k for k in rows[0] if k not in keys)
    shape = (dialect, model, tuple(keys), updated)
    stmt = _UPSERTS.get(shape)
    if stmt is None:
        stmt = insert_for(session, model.__table__)
        stmt = _UPSERTS[shape] = (stmt.on_conflict_do_update(index_elements=keys,
                                                             set_={k: stmt.excluded[k] for k in updated})
                                  if updated else stmt.on_conflict_do_nothing(index_elements=keys))
    params = [{**row, **(insert_only or {})} for row in rows]
    session.execute(stmt, params if isinstance(values, list) else params[0])
