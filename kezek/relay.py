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
from kezek.pacing import LONGEST_IDLE, IdlePause

log = get_logger(__name__)

_TRACEPARENT = re.compile(r'"traceparent":"([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})"')


# A producer's batch per partition (bytes), and how long it may wait to
# fill (ms). Every caller sends a claim's rows, then flushes, and a flush
# sends at once whatever is batched: the wait only keeps kafka-python's
# sender thread from taking a batch while the rows are still being added.
# With kafka-python's 16 KiB and 5 ms, a claim of 500 position events left
# in about seven requests, and relaying cost 147-150 us of the relay's CPU
# and 16-33 us of the broker's an event; in batches of up to 256 KiB, one
# request, 89-104 and 7-16 (bench/relay_send.py).
PRODUCER_BATCH_BYTES = 256 * 1024
PRODUCER_LINGER_MS = 1_000


def make_producer(bootstrap: str, **overrides) -> KafkaProducer:
    """A producer for sends followed by a flush (the relays, the operators'
    `publish`)."""
    config = connections.kafka(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        batch_size=PRODUCER_BATCH_BYTES,
        linger_ms=PRODUCER_LINGER_MS,
        max_block_ms=5_000,
        request_timeout_ms=10_000,
        delivery_timeout_ms=30_000,
        key_serializer=DefaultSerializer(),  # UTF-8 text
        value_serializer=DefaultSerializer(),
    )
    config.update(overrides)
    return KafkaProducer(**config)


# The oldest transaction still running and the next to begin (their ids).
_SNAPSHOT = sa.text("SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint"
                    " FROM pg_current_snapshot() AS s")


class Floor:
    """Where a relay's claims start reading the unsent rows, on PostgreSQL:
    a seq below which no row is unsent.

    Marking a row sent leaves its entry in the index of unsent rows until
    VACUUM removes it, and VACUUM cannot while any transaction older than
    the mark is open (a long report, a backup, a read model catching up).
    A claim that reads the index from its start steps over every such
    entry: on the full-size day its query took 40-660 ms on the queue's
    outbox while the position events went out, and its time grows with the
    rows marked behind an open transaction (bench/relay_claims.py). From
    the floor, a claim steps over the entries marked since the floor last
    rose.

    The floor must never pass an unsent row, and a row may become visible
    late: its seq is taken when it is written, and the row is seen only
    when its transaction commits, perhaps long after later seqs. So the
    floor is raised in three steps. A claim notes a candidate: one past the
    last seq it read (or, when it found nothing, the last written, looked
    up once a second), so every seq below it is taken (`saw`). Once `settle`
    seconds have passed (the few microseconds between taking a seq and
    having a transaction id are long over), the next id to be given out is
    noted; once the oldest running transaction is that one or younger, every
    transaction that took a seq below the candidate has ended (`ready`).
    Then the floor rises to the first unsent row below the candidate, or
    to the candidate if there is none (OutboxRelay._raised_floor): rows
    another relay holds stay above it. A relay that starts reads from the
    start."""

    def __init__(self, settle: float = 0.1, look_every: float = 1.0, clock=time.monotonic):
        self.settle = settle
        self.look_every = look_every
        self.clock = clock
        self.value: int | None = None
        self._candidate: int | None = None
        self._seen_at = 0.0
        self._next_id: int | None = None    # the next transaction id once settled
        self._looked_at: float | None = None

    def saw(self, seq: int) -> None:
        """Every seq below `seq` is taken (a row just below it was read)."""
        if self._candidate is None and (self.value is None or seq > self.value):
            self._candidate, self._seen_at, self._next_id = seq, self.clock(), None

    def wants_look(self) -> bool:
        """Whether a relay whose claim found nothing should look for the
        last seq written (rows other relays sent): once every `look_every`."""
        now = self.clock()
        if self._candidate is not None or (self._looked_at is not None and now < self._looked_at + self.look_every):
            return False
        self._looked_at = now
        return True

    def due(self) -> bool:
        """Whether the candidate waits on the transactions (`ready`)."""
        return self._candidate is not None and self.clock() >= self._seen_at + self.settle

    def ready(self, oldest_running: int, next_id: int) -> int | None:
        """Called while `due`, with the current snapshot's oldest running
        transaction id and the next id to be given out. The first call
        notes `next_id`; a later one hands back the candidate once
        `oldest_running` has reached it (every transaction that may have
        taken a seq below the candidate has ended), and gives it up: the
        caller raises the floor."""
        if self._next_id is None:
            self._next_id = next_id
            return None
        if oldest_running < self._next_id:
            return None
        candidate, self._candidate = self._candidate, None
        return candidate

    def raise_to(self, seq: int) -> None:
        self.value = seq if self.value is None else max(self.value, seq)


class OutboxRelay:
    def __init__(self, sessions: sessionmaker[Session], outbox: Outbox, bootstrap: str,
                 topic_prefix: str = "kezek", batch_size: int = 500, floor: Floor | None = None):
        self.sessions = sessions
        self.outbox = outbox
        self.bootstrap = bootstrap
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self.floor = floor or Floor()
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
        floor = self._raised_floor(session)
        if floor is not None:
            query = query.where(t.c.seq >= floor)
        rows = list(session.execute(query.with_for_update(skip_locked=True)))
        if not rows:
            if self.floor.wants_look():
                last = session.execute(sa.select(sa.func.max(t.c.seq))).scalar()
                if last is not None:
                    self.floor.saw(last + 1)
            return rows
        self.floor.saw(rows[-1].seq + 1)
        # Unsent rows before ours that are not ours: another relay holds
        # them (or they committed after our read). Our rows of their keys
        # must wait, or they could overtake them.
        # Read in seq order with a limit, so that PostgreSQL walks the unsent
        # rows' index from the floor (with only a bound, a generic plan
        # scanned the whole outbox: 1.4 s a batch behind a 500,000-row
        # backlog). Past the limit (other relays hold many rows), our rows
        # beyond what was read wait for the next round.
        ours = {r.seq for r in rows}
        limit = 4 * self.batch_size
        before = session.execute(sa.select(t.c.seq, t.c.subject)
                                 .where(t.c.sent_at.is_(None), t.c.seq >= (floor or 0), t.c.seq < rows[-1].seq)
                                 .order_by(t.c.seq).limit(limit)).all()
        if len(before) == limit:
            rows = [r for r in rows if r.seq <= before[-1].seq]
        ahead: dict[str, int] = {}
        for seq, subject in before:
            if seq not in ours and seq < ahead.get(subject, seq + 1):
                ahead[subject] = seq
        return [r for r in rows if r.subject not in ahead or r.seq < ahead[r.subject]]

    def _raised_floor(self, session: Session) -> int | None:
        """The floor (see Floor), raised when every transaction that may
        still have written below its candidate has ended."""
        if not self.floor.due():
            return self.floor.value
        candidate = self.floor.ready(*session.execute(_SNAPSHOT).one())
        if candidate is not None:
            t = self.outbox.table
            first = session.execute(sa.select(sa.func.min(t.c.seq)).where(
                t.c.sent_at.is_(None), t.c.seq >= (self.floor.value or 0), t.c.seq < candidate)).scalar()
            self.floor.raise_to(candidate if first is None else first)
        return self.floor.value

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
            backlog = outbox_backlog(session.connection(), self.outbox.table.name, self.floor.value)
        OUTBOX_UNSENT.labels(source=self.outbox.source).set(backlog.unsent)
        OUTBOX_OLDEST.labels(source=self.outbox.source).set(backlog.oldest_seconds)

    def run(self, stop: threading.Event, idle_sleep: float = 0.2, idle_max: float = LONGEST_IDLE,
            measure_every: float = 5.0) -> None:
        """Relays round after round; with nothing to send, after a pause
        from `idle_sleep` doubling up to `idle_max` (kezek/pacing.py)."""
        backoff = 0.5
        idle = IdlePause(idle_sleep, idle_max)
        measuring = Every(measure_every)
        while not stop.is_set():
            try:
                if measuring.due():
                    self.measure()
                sent = self.relay_once()
                backoff = 0.5
                if sent:
                    idle.found()
                else:
                    stop.wait(idle.next())
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
