"""The outbox relay: publishes a service's outbox rows to Kafka, then marks
them sent. At least once: a crash between the broker's ack and the mark
sends a row again, and consumers drop the repeat by event id."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import sqlalchemy as sa
from kafka import KafkaProducer
from kafka.serializer import DefaultSerializer
from sqlalchemy.orm import Session, sessionmaker

from kezek import connections
from kezek.events import aggregate_of
from kezek.logging import get_logger
from kezek.metrics import EVENTS_RELAYED, RELAY_ERRORS
from kezek.outbox import Outbox

log = get_logger(__name__)


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

    def _pending(self) -> list[sa.Row]:
        t = self.outbox.table
        with self.sessions() as session:
            return list(session.execute(
                sa.select(t.c.seq, t.c.type, t.c.subject, t.c.payload)
                .where(t.c.sent_at.is_(None)).order_by(t.c.seq).limit(self.batch_size)
            ))

    def relay_once(self) -> int:
        """Publishes one batch; returns how many rows it marked sent."""
        rows = self._pending()
        if not rows:
            return 0
        if self._producer is None:
            self._producer = make_producer(self.bootstrap)
        # Send the batch in order and wait for every ack before marking any
        # row: a failed send leaves the whole batch for the next round.
        futures = [
            self._producer.send(self.topic_for(r.type), key=r.subject, value=r.payload) for r in rows
        ]
        self._producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)
        t = self.outbox.table
        with self.sessions() as session, session.begin():
            session.execute(
                t.update().where(t.c.seq.in_([r.seq for r in rows])).values(sent_at=datetime.now(UTC))
            )
        EVENTS_RELAYED.labels(source=self.outbox.source).inc(len(rows))
        return len(rows)

    def run(self, stop: threading.Event, idle_sleep: float = 0.2) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
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
