"""Idempotent Kafka consumers.

Each message is handled in a database transaction that also records its
event id in `processed_events`; the Kafka offset is committed only after
that transaction commits. A crash in between redelivers the message, and the
recorded id makes the second delivery a no-op: exactly one effect per event.

The records of one poll and partition are handled in one transaction, in
their order (a national allocation sends hundreds of thousands of position
events through every consumer of `kezek.application`: one commit per event
held them up for minutes). If that transaction fails, nothing of it took
effect: the partition is rewound to its first record and handled record by
record up to the end of that batch, so a record that keeps failing stops
its partition where it stands, as it always did, and the records before it
take effect. A record of a type the consumer does not take is recognised
without building the event. A consumer may `prepare` a batch (its fresh
events, in the batch's transaction, before the first is handled): read in
one statement each what its handler would read event by event, and
`finish` it (after its last event, in its transaction): write at once what
the handler gathered. A consumer
whose effect is only rows written may instead take the batch's fresh events
at once (`handle_many`): one bulk statement where each event had its own.

Offsets are committed at most once every COMMIT_EVERY seconds (at the
first poll after that, with records or without), in one request for every
partition handled since; at once after a failure, and on close. A commit is
a round trip to the group's coordinator and a write of its log: committed
after every partition's batch, one registration's events cost each of the
eight groups reading `kezek.application` a commit for every fetch, most of
them for records of types the group does not take. Committing later only
widens what a crash or a rebalance delivers again (at most a second of
records), and every repeat is dropped by its claimed event id. A commit the
coordinator refuses is tried again with the next one.

A consumer may name topics to read `first`: whatever it holds of theirs is
handled before any record of its other topics (`_poll`). kafka-python hands
out what it fetched partition by partition, in the order the fetches came,
so without this a fact a parent must hear at once (a referral) waits behind
every record of a busy topic fetched before it (a distribution day's
position events, by the hundred thousand).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata
from sqlalchemy.orm import Session, sessionmaker

from kezek import connections, tracing
from kezek.events import Event, binding
from kezek.logging import get_logger
from kezek.metrics import CONSUMER_ERRORS, CONSUMER_LAG, EVENTS_CONSUMED
from kezek.outbox import Outbox
from kezek.settings import DEFAULT_TOPIC_PREFIX

log = get_logger(__name__)

Handler = Callable[[Session, Event], None]
Preparer = Callable[[Session, list[Event]], None]
BatchHandler = Callable[[Session, list[Event]], None]
MAX_POLL_RECORDS = 500
# The bound between two polls before the group counts a consumer as gone
# (ms), and the share of it one poll's records may take to handle.
MAX_POLL_INTERVAL_MS = 30_000
POLL_BUDGET_SHARE = 0.25
# Seconds between two offset commits of a consumer (see the module's text).
COMMIT_EVERY = 1.0
CLOSING_COMMIT_MS = 5_000
# How long the broker holds a fetch that finds no new record (ms), for a
# consumer without `first` topics. The broker answers a fetch as soon as a
# record arrives, so a longer hold costs an event nothing; what it saves is
# the idle consumer's fetch round, every consumer of a quiet system asking
# the broker again after each hold (kafka-python's 500 ms: two rounds a
# second each). What it costs: kafka-python keeps one fetch in flight per
# broker, so a partition sought back after a failure, or newly assigned by
# a rebalance, waits for the fetch in flight, up to the hold. A consumer
# with `first` topics keeps kafka-python's 500 ms: its poll of those topics
# alone sends a fetch of theirs alone, and that fetch, while held, would
# hold back every record of its other topics.
IDLE_FETCH_WAIT_MS = 2_000


def next_poll_size(records: int, seconds: float, ceiling: int,
                   budget: float = MAX_POLL_INTERVAL_MS / 1000 * POLL_BUDGET_SHARE) -> int:
    """How many records to ask for next, after `records` took `seconds`:
    as many as fit in `budget` seconds at that pace, at least 1 and at most
    `ceiling`. On a loaded machine a full poll can take longer than the
    group's bound between polls; the consumer is then put out of its group,
    its offset commit refused and the batch handled again after a
    rebalance, over and over. Asking for fewer records keeps it in."""
    if records <= 0 or seconds <= 0:
        return ceiling
    return max(1, min(ceiling, int(budget * records / seconds)))


def rewind(consumer: KafkaConsumer, batches: Iterable[tuple[TopicPartition, list]]) -> None:
    """Fetch each partition again from the first of its records given, if it
    is still this consumer's: after a poll, kafka-python's fetch position is
    past every record it handed out, so records a failure left unhandled are
    skipped unless sought back (a partition a rebalance took away is read by
    its next owner from the committed offset)."""
    assigned = consumer.assignment()
    for tp, records in batches:
        if records and tp in assigned:
            consumer.seek(tp, records[0].offset)


def group_for(prefix: str, name: str) -> str:
    """The consumer group of `name` in the deployment whose topics carry
    `prefix`: one group per prefix, so that deployments (or tests) sharing a
    broker never join each other's groups. A shared group rebalances all its
    members whenever one of any deployment comes or goes, and a member that
    assigns partitions without the other deployment's topics' metadata gives
    them to nobody for minutes. The default prefix keeps the bare name, so
    that no deployment loses its committed offsets."""
    return name if prefix == DEFAULT_TOPIC_PREFIX else f"{prefix}.{name}"


def topics_prefix(topics: Iterable[str]) -> str:
    """The prefix shared by topics named <prefix>.<aggregate>."""
    prefixes = {t.rsplit(".", 1)[0] for t in topics}
    if len(prefixes) != 1:
        raise ValueError(f"a consumer's topics share one prefix: {sorted(topics)}")
    return prefixes.pop()


def unpark(consumer: KafkaConsumer) -> None:
    """Lets kafka-python hand out again what it parked of a paused partition.
    kafka-python (3.0.12) parks the records it had begun to hand out of a
    partition that is paused, and takes them back after `resume` only when
    its slot for the partition in hand is `None`; but a partition's records
    used up leave their empty holder in that slot. Then the parked records,
    and every later record of their partition (no fetch is sent for a
    partition with parked records), waited for good: on a three-broker
    cluster, 17 events the notifications group never read. Emptied here
    before each poll of a consumer that pauses; one parked partition is
    taken back per poll. tests/integration/test_consumer_kafka.py
    fails if a kafka-python release changes this."""
    fetcher = getattr(consumer, "_fetcher", None)
    held = getattr(fetcher, "_next_partition_records", None)
    if held is not None and not held:
        fetcher._next_partition_records = None


class IdempotentConsumer:
    def __init__(self, *, name: str, topics: Iterable[str], bootstrap: str,
                 sessions: sessionmaker[Session], outbox: Outbox, handle: Handler | None = None,
                 types: Iterable[str] | None = None, prepare: Preparer | None = None,
                 handle_many: BatchHandler | None = None, finish: BatchHandler | None = None,
                 first: Iterable[str] = (), **kafka_config):
        if (handle is None) == (handle_many is None):
            raise ValueError("a consumer takes either handle (event by event) or handle_many (a batch at once)")
        self.name = name
        self.prepare = prepare
        self.finish = finish
        self.handle_many = handle_many
        self.topics = list(topics)
        self.first = frozenset(first) & frozenset(self.topics)
        self.sessions = sessions
        self.outbox = outbox
        self.handle = handle
        self.types = set(types) if types else None
        config = connections.kafka(
            bootstrap_servers=bootstrap,
            group_id=group_for(topics_prefix(self.topics), name),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # A consumer that lost its broker rejoins its group within this
            # bound instead of the 5-minute default.
            max_poll_interval_ms=MAX_POLL_INTERVAL_MS,
            request_timeout_ms=30_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        config.setdefault("max_poll_records", MAX_POLL_RECORDS)
        if not self.first:
            config["fetch_max_wait_ms"] = IDLE_FETCH_WAIT_MS
        config.update(kafka_config)
        self.ceiling = config["max_poll_records"]
        self.poll_size = self.ceiling
        self.consumer = KafkaConsumer(**config)
        self.consumer.subscribe(self.topics)
        self._measured = 0.0
        # Offsets handled (their transactions committed), not committed to Kafka yet.
        self._uncommitted: dict[TopicPartition, int] = {}
        self.clock = time.monotonic
        self._committed_at = self.clock()
        # partition -> last offset of a batch that failed: handled record by record up to it
        self._careful: dict[TopicPartition, int] = {}

    def _event(self, raw: bytes, headers=None, key: bytes | None = None) -> Event | None:
        """The record's event, or None when its type is not one this consumer
        takes (told from the type alone, without building the event)."""
        if self.types is not None:
            peeked = binding.type_of(raw, headers)
            if peeked is not None and peeked not in self.types:
                return None
        event = binding.event_of(raw, headers, key)
        if self.types is not None and event.type not in self.types:
            return None
        return event

    def _span(self, event: Event):
        return tracing.continued(event.trace, f"{self.name} process {event.type}", attributes={
            "messaging.system": "kafka", "messaging.operation.type": "process",
            "messaging.consumer.group.name": self.name, "messaging.message.id": event.id,
            "cloudevents.event_type": event.type, "cloudevents.event_subject": event.subject})

    def process(self, raw: bytes, headers=None, key: bytes | None = None) -> bool:
        """Applies one message (either mode of the CloudEvents Kafka binding,
        kezek/events/binding.py); False when it was a repeat (or not for us)."""
        event = self._event(raw, headers, key)
        if event is None:
            return False
        with structlog.contextvars.bound_contextvars(event_id=event.id, event_type=event.type, consumer=self.name), \
                self._span(event) as span:
            with self.sessions() as session, session.begin():
                if not self.outbox.claim(session, self.name, event.id):
                    log.info("consumer.duplicate_dropped")
                    span.set_attribute("kezek.duplicate", True)
                    return False
                if self.handle_many is not None:
                    self.handle_many(session, [event])
                else:
                    self.handle(session, event)
            EVENTS_CONSUMED.labels(consumer=self.name, type=event.type).inc()
            log.debug("consumer.handled")
            return True

    def process_batch(self, records) -> int:
        """Applies the records of one partition, in order, in one
        transaction; how many took effect (repeats and other types none)."""
        events = [e for e in (self._event(r.value, r.headers, r.key) for r in records) if e is not None]
        if not events:
            return 0
        handled = []
        with self.sessions() as session, session.begin():
            fresh = self.outbox.claim_many(session, self.name, [e.id for e in events])
            if self.prepare is not None and fresh:
                self.prepare(session, [e for e in events if e.id in fresh])
            for event in events:
                if event.id not in fresh:
                    continue
                fresh.discard(event.id)        # the same event twice in one batch takes effect once
                if self.handle_many is not None:
                    handled.append(event)
                    continue
                with structlog.contextvars.bound_contextvars(event_id=event.id, event_type=event.type,
                                                             consumer=self.name), self._span(event):
                    self.handle(session, event)
                handled.append(event)
            if self.handle_many is not None and handled:
                with structlog.contextvars.bound_contextvars(consumer=self.name, events=len(handled)):
                    self.handle_many(session, handled)
            if self.finish is not None and handled:
                self.finish(session, handled)
        for event in handled:
            EVENTS_CONSUMED.labels(consumer=self.name, type=event.type).inc()
        if handled or len(events) > len(handled):
            log.info("consumer.handled", consumer=self.name, events=len(handled),
                     duplicates_dropped=len(events) - len(handled))
        return len(handled)

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Handles one poll's records, each partition's in one transaction
        (record by record after a failed batch, see the module's doc). A
        failure rewinds its partition, so the records are tried again, never
        skipped; offsets are committed only for records whose transaction
        committed, and at most once a second (`commit`). A failure leaves
        every partition whose records were not handled rewound to them: the
        fetch position is already past them, and a partition that stays
        assigned through the group's next rebalance keeps its position. A
        commit the coordinator refuses (a broker or a member died) comes
        after the poll's records were handled, and is tried again."""
        handled = 0
        batches = self._poll(timeout_ms)
        started = time.monotonic()
        current = 0
        try:
            for current, (tp, records) in enumerate(batches):
                handled += self._handle_batch(tp, records)
        except Exception:
            rewind(self.consumer, batches[current + 1:])
            self._commit_or_leave()     # what took effect before the failure
            raise
        if self.clock() - self._committed_at >= COMMIT_EVERY:
            self.commit()
        if batches:
            self.poll_size = next_poll_size(sum(len(r) for _, r in batches), time.monotonic() - started,
                                            self.ceiling)
        if time.monotonic() - self._measured >= 5:
            self._measured = time.monotonic()
            self.measure_lag()
        return handled

    def commit(self, timeout_ms: int | None = None) -> None:
        """Commits, in one request, the offsets handled since the last
        commit (their transactions have committed). A partition a rebalance
        took away is its next owner's to commit: it reads those records
        again and drops them by their claims. Refused, the offsets wait for
        the next commit, at the next poll. `timeout_ms`: how long to wait
        for the coordinator (kafka-python's default, request_timeout_ms)."""
        if not self._uncommitted:
            self._committed_at = self.clock()
            return
        assigned = self.consumer.assignment()
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._uncommitted.items()
                   if tp in assigned}
        if offsets:
            self.consumer.commit(offsets, **({} if timeout_ms is None else {"timeout_ms": timeout_ms}))
        self._uncommitted = {}
        self._committed_at = self.clock()

    def _commit_or_leave(self, timeout_ms: int | None = None) -> None:
        """`commit`, or a warning when refused: what was handled is read
        again after a rebalance or a restart, and dropped by its claims."""
        try:
            self.commit(timeout_ms)
        except Exception as exc:
            log.warning("consumer.commit_failed", consumer=self.name, error=repr(exc))

    def _handle_batch(self, tp: TopicPartition, records: list) -> int:
        """One partition's records of a poll, their offset then due for the
        next commit. A failure rewinds the partition to its first unhandled record."""
        handled = 0
        done = None
        careful = self._careful.get(tp)
        try:
            if careful is None:
                handled += self.process_batch(records)
                done = records[-1].offset
            else:
                for record in records:
                    if self.process(record.value, record.headers, record.key):
                        handled += 1
                    done = record.offset
                    if done >= careful:
                        # past the failed batch; the rest of this
                        # poll one by one too (simple, and rare)
                        self._careful.pop(tp, None)
        except Exception:
            if careful is None and done is None:
                self._careful[tp] = records[-1].offset
            rewind(self.consumer, [(tp, records if done is None else [r for r in records if r.offset > done])])
            raise
        finally:
            if done is not None:
                # Committed to Kafka after the database commits, never before (`commit`).
                self._uncommitted[tp] = done + 1
        return handled

    def _poll(self, timeout_ms: int) -> list[tuple[TopicPartition, list]]:
        """One poll's records by partition, the `first` topics' before the
        others'. What the consumer holds of the first topics is taken by a
        poll with the other partitions paused (kafka-python keeps what it
        fetched of a paused partition and hands it out after `resume`,
        KAFKA-7548): a plain poll would hand out the other topics' records
        fetched before it first. Only when it holds none of theirs does the
        consumer poll every partition (and wait for records)."""
        if self.first:
            others = [tp for tp in self.consumer.assignment() if tp.topic not in self.first]
            if others:
                self.consumer.pause(*others)
                try:
                    unpark(self.consumer)
                    first = self.consumer.poll(timeout_ms=0, max_records=self.poll_size)
                finally:
                    # (a rebalance within the poll may have taken some away)
                    self.consumer.resume(*(set(others) & self.consumer.assignment()))
                if first:
                    return list(first.items())
            unpark(self.consumer)
        records = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.poll_size)
        return sorted(records.items(), key=lambda batch: batch[0].topic not in self.first)

    def measure_lag(self) -> None:
        """This replica's lag per topic: on each partition assigned to it,
        the broker's last offset (as of the last fetch) minus the next one
        to handle. No network call; a partition not fetched yet counts 0."""
        lag = dict.fromkeys(self.topics, 0)
        # The consumer's own record of its position (KafkaConsumer.position
        # may ask the coordinator, which this must never wait on).
        state = self.consumer._subscription
        for tp in self.consumer.assignment():
            high = self.consumer.highwater(tp)
            if high is None or not state.has_valid_position(tp):
                continue
            position = state.position(tp)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - getattr(position, "offset", position))
        for topic, n in lag.items():
            CONSUMER_LAG.labels(consumer=self.name, topic=topic).set(n)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                CONSUMER_ERRORS.labels(consumer=self.name).inc()
                log.warning("consumer.poll_failed", consumer=self.name, error=repr(exc))
                stop.wait(1)
        self.close()

    def close(self) -> None:
        # Not the 30 s of a request's bound when the broker is gone: a stop
        # waits for this.
        self._commit_or_leave(CLOSING_COMMIT_MS)
        try:
            self.consumer.close(autocommit=False)
        except Exception:
            pass
