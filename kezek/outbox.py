"""The transactional outbox and the processed-events table.

A service writes its events as rows of its own `outbox` table in the same
transaction as the state change they describe, so a change and its events
commit or roll back together. The relay publishes them afterwards, at least
once; consumers deduplicate by event id (`processed_events`) in the same
transaction as their effect.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.events import Event, new_event


class Outbox:
    def __init__(self, metadata: sa.MetaData, source: str):
        self.source = source
        self.table = sa.Table("outbox", metadata, *_outbox_columns(), _unsent_index())
        self.processed = sa.Table("processed_events", metadata, *_processed_columns())

    def add(self, session: Session, event_type: str, subject: str, data: dict[str, Any],
            *, time: datetime | None = None, event_id: str | None = None) -> Event:
        """Records an event in the caller's transaction; it is validated first."""
        event = new_event(event_type, subject, data, source=self.source, time=time, event_id=event_id)
        session.execute(self.table.insert().values(
            event_id=event.id, type=event.type, subject=event.subject,
            payload=event.to_json(), created_at=datetime.now(UTC),
        ))
        return event

    def claim(self, session: Session, consumer: str, event_id: str) -> bool:
        """True if this consumer has not processed the event before; the claim
        commits with the caller's transaction, so effect and claim are one."""
        dialect = session.get_bind().dialect.name
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(self.processed).values(
            consumer=consumer, event_id=event_id, processed_at=datetime.now(UTC),
        ).on_conflict_do_nothing().returning(self.processed.c.event_id)
        # RETURNING, not rowcount: psycopg reports -1 for this statement.
        return session.execute(stmt).first() is not None

    def pending(self, session: Session) -> int:
        return session.execute(
            sa.select(sa.func.count()).select_from(self.table).where(self.table.c.sent_at.is_(None))
        ).scalar_one()


def _outbox_columns() -> list[sa.Column]:
    return [
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    ]


def _unsent_index() -> sa.Index:
    unsent = sa.text("sent_at IS NULL")
    return sa.Index("ix_outbox_unsent", "seq", postgresql_where=unsent, sqlite_where=unsent)


def _processed_columns() -> list[sa.Column]:
    return [
        sa.Column("consumer", sa.String(100), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
    ]


def create_outbox_tables(op) -> None:
    """Migration step shared by every service's first revision."""
    unsent = sa.text("sent_at IS NULL")
    op.create_table("outbox", *_outbox_columns())
    op.create_index("ix_outbox_unsent", "outbox", ["seq"], postgresql_where=unsent, sqlite_where=unsent)
    op.create_table("processed_events", *_processed_columns())


def drop_outbox_tables(op) -> None:
    op.drop_table("processed_events")
    op.drop_index("ix_outbox_unsent", "outbox")
    op.drop_table("outbox")
