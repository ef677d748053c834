"""Idempotent Kafka consumers.

Each message is handled in one database transaction that also records its
event id in `processed_events`; the Kafka offset is committed only after
that transaction commits. A crash in between redelivers the message, and the
recorded id makes the second delivery a no-op: exactly one effect per event.
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

log = get_logger(__name__)

Handler = Callable[[Session, Event], None]


class IdempotentConsumer:
    def __init__(self, *, name: str, topics: Iterable[str], bootstrap: str,
                 sessions: sessionmaker[Session], outbox: Outbox, handle: Handler,
                 types: Iterable[str] | None = None, **kafka_config):
        self.name = name
        self.topics = list(topics)
        self.sessions = sessions
        self.outbox = outbox
        self.handle = handle
        self.types = set(types) if types else None
        config = connections.kafka(
            bootstrap_servers=bootstrap,
            group_id=name,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=100,
            # A consumer that lost its broker rejoins its group within this
            # bound instead of the 5-minute default.
            max_poll_interval_ms=30_000,
            request_timeout_ms=30_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=3_000,
        )
        config.update(kafka_config)
        self.consumer = KafkaConsumer(**config)
        self.consumer.subscribe(self.topics)
        self._measured = 0.0

    def process(self, raw: bytes, headers=None, key: bytes | None = None) -> bool:
        """Applies one message (either mode of the CloudEvents Kafka binding,
        kezek/events/binding.py); False when it was a repeat (or not for us)."""
        event = binding.event_of(raw, headers, key)
        if self.types is not None and event.type not in self.types:
            return False
        with structlog.contextvars.bound_contextvars(event_id=event.id, event_type=event.type, consumer=self.name), \
                tracing.continued(event.trace, f"{self.name} process {event.type}", attributes={
                    "messaging.system": "kafka", "messaging.operation.type": "process",
                    "messaging.consumer.group.name": self.name, "messaging.message.id": event.id,
                    "cloudevents.event_type": event.type, "cloudevents.event_subject": event.subject}) as span:
            with self.sessions() as session, session.begin():
                if not self.outbox.claim(session, self.name, event.id):
                    log.info("consumer.duplicate_dropped")
                    span.set_attribute("kezek.duplicate", True)
                    return False
                self.handle(session, event)
            EVENTS_CONSUMED.labels(consumer=self.name, type=event.type).inc()
            log.info("consumer.handled")
            return True

    def poll_once(self, timeout_ms: int = 500) -> int:
        """Handles one poll's records. A handler failure rewinds its partition
        to the failed record, so it is tried again, never skipped; offsets
        are committed only for records whose transaction committed."""
        handled = 0
        batches = list(self.consumer.poll(timeout_ms=timeout_ms).items())
        for i, (tp, records) in enumerate(batches):
            done = None
            try:
                for record in records:
                    if self.process(record.value, record.headers, record.key):
                        handled += 1
                    done = record.offset
            except Exception:
                # The fetch position is past every record this poll returned:
                # rewind this partition to the failed record and the others
                # of the batch to their first unhandled one.
                self.consumer.seek(tp, records[0].offset if done is None else done + 1)
                for later_tp, later_records in batches[i + 1:]:
                    self.consumer.seek(later_tp, later_records[0].offset)
                raise
            finally:
                if done is not None:
                    # After the database commits, never before.
                    self.consumer.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(done + 1, "", -1)})
        if time.monotonic() - self._measured >= 5:
            self._measured = time.monotonic()
            self.measure_lag()
        return handled

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
        try:
            self.consumer.close(autocommit=False)
        except Exception:
            pass
