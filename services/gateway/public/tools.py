"""Small helpers for operators and tests: publish internal events by hand,
read a topic from the beginning, drive a consumer until it has handled N."""
from __future__ import annotations

import time
from collections.abc import Iterable

from kafka import KafkaConsumer

from kezek.events import Event
from kezek import connections
from kezek.relay import make_producer


def publish(bootstrap: str, topic: str, events: Iterable[Event]) -> None:
    producer = make_producer(bootstrap)
    try:
        for e in events:
            producer.send(topic, key=e.subject, value=e.to_json())
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)


def read_topic(bootstrap: str, topic: str, *, expect: int | None = None, timeout: float = 30,
               idle_ms: int = 1500) -> list:
    """Every record of the topic, from the beginning; stops after `expect`
    records or when nothing arrives for `idle_ms`."""
    reader = KafkaConsumer(topic, **connections.kafka(), bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                           enable_auto_commit=False)
    records: list = []
    deadline = time.monotonic() + timeout
    idle_since = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = reader.poll(timeout_ms=200)
            got = [r for rs in batch.values() for r in rs]
            records += got
            if got:
                idle_since = time.monotonic()
            if expect is not None and len(records) >= expect:
                break
            if expect is None and records and (time.monotonic() - idle_since) * 1000 > idle_ms:
                break
    finally:
        reader.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))


def drive(poll_once, until, timeout: float = 30) -> None:
    """Calls `poll_once()` until `until()` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if until():
            return
        poll_once()
    if not until():
        raise TimeoutError("condition not reached")
