"""The transactional outbox and the processed-events table.

A service writes its events as rows of its own `outbox` table in the same
transaction as the state change they describe, so a change and its events
commit or roll back together. The relay publishes them afterwards, at least
once; consumers deduplicate by event id (`processed_events`) in the same
transaction as their effect.

The payload of an event that carries personal data (a PIN, a name, a
contact: `kezek.events.carries_personal_data`) is sealed at rest with the
service's key ring (kezek/sealing.py) and opened when it is read, so the
table keeps none in clear; Kafka's internal topics carry it as it is.
"""
from __future__ import annotations

import time as _time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.events import Event, carries_personal_data, dataschema_for, new_event, validate_data
from kezek.tracing import current_context
from kezek.sealing import Keyring, Sealed, ring_of

PURPOSE = "outbox payload"


class Payload(Sealed):
    """An outbox payload: JSON, or sealed when its event carries personal
    data (the writer seals it: a COPY passes no column type). Read back in
    clear either way."""

    cache_ok = True

    def __init__(self):
        super().__init__(PURPOSE)

    def process_bind_param(self, value, dialect):
        return value

    def process_result_value(self, value, dialect):
        return super().process_result_value(value, dialect) if Keyring.is_sealed(value) else value


def sealed_payload(ring: Keyring, event_type: str, payload: str) -> str:
    return ring.seal(payload, PURPOSE) if carries_personal_data(event_type) else payload

_CHUNK = 5000  # rows per INSERT where there is no COPY
SAMPLE_CHECKED = 1000  # rows of a server-built batch read back and validated


def batch_ids() -> tuple[str, int]:
    """Event ids for one batch written by the database: UUIDs of version 7
    (RFC 9562: the time in milliseconds, then random bits) whose last 48
    bits count up from a random start, `prefix` + 12 hex digits of
    `start + n`. Unique like any UUIDv7 (73 random bits per batch), and,
    unlike random ones, each batch's ids fall at one end of the unique index
    on event_id rather than all over it: half the cost of writing a row."""
    ms = int(_time.time() * 1000) & (2**48 - 1)
    rand = uuid.uuid4().int
    value = (ms << 80) | (0x7 << 76) | (((rand >> 64) & 0xFFF) << 64) | (0b10 << 62) | (((rand >> 48) & 0x3FFF) << 48)
    text = str(uuid.UUID(int=value))
    return text[:24], rand & (2**47 - 1)


class Outbox:
    # Events carry the trace of the act that wrote them (kezek.tracing).
    carries_trace = True

    def __init__(self, metadata: sa.MetaData, source: str):
        self.source = source
        self.table = sa.Table("outbox", metadata, *_outbox_columns(), _unsent_index())
        self.processed = sa.Table("processed_events", metadata, *_processed_columns())
        self._claims: dict[str, Any] = {}

    def add(self, session: Session, event_type: str, subject: str, data: dict[str, Any],
            *, time: datetime | None = None, event_id: str | None = None, schema_base: str | None = None) -> Event:
        """Records an event in the caller's transaction; it is validated first.
        `schema_base`: where readers fetch its schema (kezek.events.dataschema_for).
        It carries the current trace (kezek.tracing) unless this outbox's
        events are for outside readers."""
        event = self.new(event_type, subject, data, time=time, event_id=event_id, schema_base=schema_base)
        self.write(session, [event])
        return event

    def new(self, event_type: str, subject: str, data: dict[str, Any], *, time: datetime | None = None,
            event_id: str | None = None, schema_base: str | None = None,
            trace: dict[str, str] | None = None) -> Event:
        """An event of this outbox, validated, not yet written (`write`).
        `trace`: the trace it carries when not the current one (an event
        made after the act it tells of, kept from `current_context()` then)."""
        if not self.carries_trace:
            trace = None
        elif trace is None:
            trace = current_context()
        return new_event(event_type, subject, data, source=self.source, time=time, event_id=event_id,
                         schema_base=schema_base, trace=trace)

    def write(self, session: Session, events: list[Event]) -> None:
        """Events made by `new`, in the caller's transaction and in their
        order, in one statement."""
        if not events:
            return
        ring, created = ring_of(session), datetime.now(UTC)
        session.execute(self.table.insert(), [
            {"event_id": e.id, "type": e.type, "subject": e.subject,
             "payload": sealed_payload(ring, e.type, e.to_json()), "created_at": created} for e in events])

    def add_many(self, session: Session, event_type: str, items: Iterable[tuple[str, dict[str, Any]]],
                 *, time: datetime | None = None, schema_base: str | None = None) -> int:
        """Many events of one type, as (subject, data), in the caller's
        transaction: each is validated against its schema as it is written,
        and an invalid one raises InvalidEvent, so the transaction writes
        none of them. One COPY on PostgreSQL (hundreds of thousands of rows
        in seconds), batched INSERTs elsewhere. Returns how many."""
        at = time or datetime.now(UTC)
        head = {"specversion": "1.0", "id": "", "source": f"/kezek/{self.source}", "type": event_type, "time": at,
                "subject": "", "datacontenttype": "application/json",
                "dataschema": dataschema_for(event_type, schema_base), "data": None,
                **(current_context() if self.carries_trace else {})}
        created = datetime.now(UTC)
        ring = ring_of(session) if carries_personal_data(event_type) else None

        def rows():
            for subject, data in items:
                validate_data(event_type, data)
                event_id = str(uuid.uuid4())
                # The envelope Event.to_json() writes, field for field.
                payload = pydantic_core.to_json({**head, "id": event_id, "subject": subject, "data": data}).decode()
                yield event_id, event_type, subject, ring.seal(payload, PURPOSE) if ring else payload, created

        n = 0
        if session.get_bind().dialect.name == "postgresql":
            with session.connection().connection.driver_connection.cursor() as cur:
                with cur.copy("COPY outbox (event_id, type, subject, payload, created_at) FROM STDIN") as copy:
                    for row in rows():
                        copy.write_row(row)
                        n += 1
            return n
        batch: list[dict] = []
        for event_id, type_, subject, payload, created_at in rows():
            batch.append({"event_id": event_id, "type": type_, "subject": subject, "payload": payload,
                          "created_at": created_at})
            if len(batch) == _CHUNK:
                session.execute(self.table.insert(), batch)
                n, batch = n + len(batch), []
        if batch:
            session.execute(self.table.insert(), batch)
            n += len(batch)
        return n

    def add_from_query(self, session: Session, event_type: str, rows_sql: str, params: dict[str, Any],
                       *, ctes: str = "", time: datetime | None = None, schema_base: str | None = None,
                       check: int = SAMPLE_CHECKED) -> int:
        """Many events of one type built by PostgreSQL itself, never passing
        through Python: `rows_sql` is a SELECT giving `subject` (text) and
        `data` (json, jsonb, or the text of a JSON object) per event, with its `params` (psycopg's
        %(name)s style; names starting with `_ob_` are taken), after the
        common table expressions `ctes` ("a AS (...), b AS (...)"; data-
        modifying ones too, which must stand at the top). The envelope
        is made beside it in the same statement, in the caller's transaction.
        Every row comes from one expression over typed columns, so the
        first `check` rows written are read back and validated against the
        schema; one invalid raises InvalidEvent and the caller's transaction
        writes none of them. Returns how many. Refused for an event that
        carries personal data: PostgreSQL cannot seal it (kezek/sealing.py).
        Each event carries the current trace, as `add` and `add_many` write it."""
        if carries_personal_data(event_type):
            raise ValueError(f"{event_type} carries personal data: add it through Python, which seals it")
        at = time or datetime.now(UTC)
        prefix, start = batch_ids()

        def j(value: Any) -> str:
            return pydantic_core.to_json(value).decode()

        # The envelope Event.to_json() writes, field for field, as text around
        # each event's id, subject and data: its other fields are the same for
        # every row, so they are made here once (json_build_object made them
        # again for each row, as long as building the data). The extension
        # attributes only when set, as Event.to_json writes them.
        trace = current_context() if self.carries_trace else {}
        head = {"_ob_type": event_type, "_ob_created": datetime.now(UTC), "_ob_prefix": prefix, "_ob_start": start,
                "_ob_open": '{"specversion":"1.0","id":"',
                "_ob_after_id": f'","source":{j(f"/kezek/{self.source}")},"type":{j(event_type)},"time":{j(at)},'
                                '"subject":',
                "_ob_after_subject": f',"datacontenttype":"application/json",'
                                     f'"dataschema":{j(dataschema_for(event_type, schema_base))},"data":',
                "_ob_close": "".join(f",{j(k)}:{j(v)}" for k, v in trace.items()) + "}"}
        sql = f"""
            WITH {ctes + ", " if ctes else ""}_ob_rows AS ({rows_sql}), _ob_events AS (
                SELECT CAST(%(_ob_prefix)s AS text)
                       || lpad(to_hex(CAST(%(_ob_start)s AS bigint) + row_number() OVER ()), 12, '0') AS event_id,
                       subject, data
                FROM _ob_rows
            ), _ob_written AS (
                INSERT INTO outbox (event_id, type, subject, payload, created_at)
                SELECT event_id, CAST(%(_ob_type)s AS text), subject,
                       CAST(%(_ob_open)s AS text) || event_id || CAST(%(_ob_after_id)s AS text)
                       || CAST(to_json(CAST(subject AS text)) AS text) || CAST(%(_ob_after_subject)s AS text)
                       || CAST(data AS text) || CAST(%(_ob_close)s AS text), CAST(%(_ob_created)s AS timestamptz)
                FROM _ob_events
                RETURNING seq
            )
            SELECT count(*), min(seq) FROM _ob_written"""
        with session.connection().connection.driver_connection.cursor() as cur:
            # Not prepared: constants (lists of keys) are hashed by the planner.
            n, first = cur.execute(sql, {**params, **head}, prepare=False).fetchone()
            if n and check:
                cur.execute("SELECT payload FROM outbox WHERE seq >= %s AND type = %s ORDER BY seq LIMIT %s",
                            (first, event_type, check))
                for (payload,) in cur.fetchall():
                    event = Event.from_json(payload)
                    validate_data(event.type, event.data)
        return int(n or 0)

    def claim(self, session: Session, consumer: str, event_id: str) -> bool:
        """True if this consumer has not processed the event before; the claim
        commits with the caller's transaction, so effect and claim are one."""
        # RETURNING, not rowcount: psycopg reports -1 for this statement.
        row = {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)}
        return session.execute(self._claim_statement(session), row).first() is not None

    def _claim_statement(self, session: Session):
        """The claim's INSERT ... ON CONFLICT DO NOTHING, built once per
        dialect and given its values as parameters: built with the values
        inline, each claim (one per event consumed, one per workflow
        activity) was a new statement to key and compile."""
        dialect = session.get_bind().dialect.name
        stmt = self._claims.get(dialect)
        if stmt is None:
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = self._claims[dialect] = (insert(self.processed).on_conflict_do_nothing()
                                            .returning(self.processed.c.event_id))
        return stmt

    def claim_many(self, session: Session, consumer: str, event_ids: list[str]) -> set[str]:
        """`claim` for a batch, in one statement: the ids not processed before."""
        if not event_ids:
            return set()
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        now = datetime.now(UTC)
        stmt = insert(self.processed).values([{"consumer": consumer, "event_id": e, "processed_at": now}
                                              for e in dict.fromkeys(event_ids)])
        stmt = stmt.on_conflict_do_nothing().returning(self.processed.c.event_id)
        return {row[0] for row in session.execute(stmt)}

    def pending(self, session: Session) -> int:
        return session.execute(
            sa.select(sa.func.count()).select_from(self.table).where(self.table.c.sent_at.is_(None))
        ).scalar_one()


def payloads(bind, event_type: str | None = None) -> list[str]:
    """The payloads of a service's outbox in order, opened (tools and tests)."""
    t = sa.Table("outbox", sa.MetaData(), *_outbox_columns())
    q = sa.select(t.c.payload).order_by(t.c.seq)
    if event_type:
        q = q.where(t.c.type == event_type)
    with bind.connect() as conn:
        return list(conn.scalars(q))


def _outbox_columns() -> list[sa.Column]:
    return [
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("payload", Payload(), nullable=False),
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
