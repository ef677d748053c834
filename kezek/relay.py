"""The outbox relay: publishes a service's outbox rows to Kafka, then marks
them sent. At least once: a crash between the broker's ack and the mark
sends a row again, and consumers drop the repeat by event id.

Any number of relays may run on one outbox (on PostgreSQL). Each claims the
rows it publishes (`FOR UPDATE SKIP LOCKED`, held until they are marked), so
two relays do not send the same rows; a relay that dies loses its claim with
its connection, and the rows are sent by another. One aggregate's events
stay in order across relays: a relay publishes a row only when every earlier
unsent row of its key (its subject, which is also the Kafka key, so one
partition) is in its own batch, ahead of it. Rows of a key that another
relay holds wait for the next round. So whoever publishes an event has
published, or found already in Kafka, each earlier event of its aggregate,
and a consumer that drops repeats sees every aggregate's events in order.

On SQLite (one machine, one writer) a relay reads without claiming: run one
(two would send each row twice, still in order per key)."""
from __future__ import annotations

import re
import threading
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from kafka import KafkaProducer
from kafka.serializer import DefaultSerializer
from opentelemetry.trace import SpanKind
from sqlalchemy.orm import Session, sessionmaker

from kezek import connections, tracing
from kezek.events import aggregate_of, binding
from kezek.logging import get_logger
from kezek.lags import outbox_backlog
from kezek.metrics import EVENTS_RELAYED, OUTBOX_OLDEST, OUTBOX_UNSENT, RELAY_ERRORS, Every
from kezek.outbox import Outbox

log = get_logger(__name__)

_TRACEPARENT = re.compile(r'"traceparent":"([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})"')


def make_producer(bootstrap: str, **overrides) -> KafkaProducer:
    config = connections.kafka(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_block_ms=5_000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=30_000,
        key_serializer=DefaultSerializer(),  # UTF-8 text
        value_serializer=DefaultSerializer(),
    )
    config.update(overrides)
    return KafkaProducer(**config)


class OutboxRelay:
    def __init__(self, sessions: sessionmaker[Session], outbox: Outbox, bootstrap: str,
                 topic_prefix: str = "kezek", batch_size: int = 500):
        self.sessions = sessions
        self.outbox = outbox
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self._producer: KafkaProducer | None = None

    def topic_for(self, event_type: str) -> str:
        return f"{self.topic_prefix}.{aggregate_of(event_type)}"

    def _claim(self, session: Session) -> list[sa.Row]:
        """The next batch this relay may publish, in seq order, claimed in
        the caller's transaction on PostgreSQL."""
        t = self.outbox.table
        query = (sa.select(t.c.seq, t.c.type, t.c.subject, t.c.payload)
                 .where(t.c.sent_at.is_(None)).order_by(t.c.seq).limit(self.batch_size))
        if session.get_bind().dialect.name != "postgresql":
            return list(session.execute(query))
        rows = list(session.execute(query.with_for_update(skip_locked=True)))
        if not rows:
            return rows
        # Unsent rows before ours that are not ours: another relay holds
        # them (or they committed after our read). Our rows of their keys
        # must wait, or they could overtake them.
        # Read in seq order with a limit, so that PostgreSQL walks the unsent
        # rows' index from its start (with only a bound, a generic plan
        # scanned the whole outbox: 1.4 s a batch behind a 500,000-row
        # backlog). Past the limit (other relays hold many rows), our rows
        # beyond what was read wait for the next round.
        ours = {r.seq for r in rows}
        limit = 4 * self.batch_size
        before = session.execute(sa.select(t.c.seq, t.c.subject)
                                 .where(t.c.sent_at.is_(None), t.c.seq < rows[-1].seq)
                                 .order_by(t.c.seq).limit(limit)).all()
        if len(before) == limit:
            rows = [r for r in rows if r.seq <= before[-1].seq]
        ahead: dict[str, int] = {}
        for seq, subject in before:
            if seq not in ours and seq < ahead.get(subject, seq + 1):
                ahead[subject] = seq
        return [r for r in rows if r.subject not in ahead or r.seq < ahead[r.subject]]

    def relay_once(self) -> int:
        """Publishes one batch; returns how many rows it marked sent."""
        with self.sessions() as session:
            if session.get_bind().dialect.name == "postgresql":
                with session.begin():   # the claim holds until the rows are marked
                    rows = self._claim(session)
                    if rows:
                        self._publish(rows)
                        self._mark(session, rows)
            else:
                with session.begin():   # SQLite: never hold its one write lock over a send
                    rows = self._claim(session)
                if rows:
                    self._publish(rows)
                    with session.begin():
                        self._mark(session, rows)
        if rows:
            EVENTS_RELAYED.labels(source=self.outbox.source).inc(len(rows))
        return len(rows)

    def _mark(self, session: Session, rows: list[sa.Row]) -> None:
        t = self.outbox.table
        session.execute(t.update().where(t.c.seq.in_([r.seq for r in rows])).values(sent_at=datetime.now(UTC)))

    def _publish(self, rows: list[sa.Row]) -> None:
        """Sends the rows in order and waits for every ack (acks=all, an
        idempotent producer: no reordering within a partition, even on
        retries). A failed send raises, and no row of the batch is marked."""
        if self._producer is None:
            self._producer = make_producer(self.bootstrap)
        # Structured mode of the CloudEvents Kafka binding: the payload is the envelope.
        futures = [self._producer.send(self.topic_for(r.type), key=r.subject, value=r.payload, headers=binding.HEADERS)
                   for r in rows]
        self._producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)
        self._traced(rows)

    def _traced(self, rows: list[sa.Row]) -> None:
        """A producer span in each event's trace, once Kafka has it (the
        event carries its traceparent: the consumer continues from there)."""
        for r in rows:
            found = _TRACEPARENT.search(r.payload)
            if found is None:
                continue
            with tracing.continued({"traceparent": found.group(1)}, f"send {self.topic_for(r.type)}",
                                   kind=SpanKind.PRODUCER, attributes={
                                       "messaging.system": "kafka", "messaging.operation.type": "send",
                                       "messaging.destination.name": self.topic_for(r.type),
                                       "messaging.kafka.message.key": r.subject, "cloudevents.event_type": r.type}):
                pass

    def measure(self) -> None:
        """The outbox's backlog for the metrics: unsent rows, oldest age."""
        with self.sessions() as session:
            backlog = outbox_backlog(session.connection(), self.outbox.table.name)
        OUTBOX_UNSENT.labels(source=self.outbox.source).set(backlog.unsent)
        OUTBOX_OLDEST.labels(source=self.outbox.source).set(backlog.oldest_seconds)

    def run(self, stop: threading.Event, idle_sleep: float = 0.2, measure_every: float = 5.0) -> None:
        backoff = 0.5
        measuring = Every(measure_every)
        while not stop.is_set():
            try:
                if measuring.due():
                    self.measure()
                sent = self.relay_once()
                backoff = 0.5
                if sent == 0:
                    stop.wait(idle_sleep)
            except Exception as exc:  # the broker may be down: keep the rows, retry
                RELAY_ERRORS.labels(source=self.outbox.source).inc()
                log.warning("relay.publish_failed", source=self.outbox.source, error=repr(exc), retry_in=backoff)
                self.close()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10)
        self.close()

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except Exception:  # closing a producer to a dead broker may raise
                pass
            self._producer = None


def wait_until_relayed(relay: OutboxRelay, timeout: float = 30) -> None:
    """Test and CLI helper: relays until the outbox is empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if relay.relay_once() == 0:
            return
    raise TimeoutError("outbox not drained")
