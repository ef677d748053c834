"""The idempotent consumer (kezek/consumer.py) on a real broker.

Its `first` topics: the
records of its other topics that kafka-python was holding when it paused
them are all handed out after they are resumed, none left behind.

kafka-python 3.0.12 parks the records it had begun to hand out of a paused
partition, and takes them back only when its slot for the partition in hand
is empty (`None`); after a partition's records are used up the slot keeps
the empty holder, so the parked records, and every later record of their
partition (no fetch is sent for a partition with parked records), waited
forever. On a three-broker cluster that left 17 events unconsumed by the
notifications group (tests/integration/test_cluster.py).

Its consumer group: one per deployment (topic prefix) on a shared broker.

Its fetch's hold: the broker holds a fetch that finds nothing for up to
`IDLE_FETCH_WAIT_MS`, and answers it as soon as a record arrives."""
from __future__ import annotations

import time
import uuid

import pytest
from kafka import KafkaProducer

from kezek.consumer import IDLE_FETCH_WAIT_MS, IdempotentConsumer, group_for
from kezek.events import new_event
from kezek.infra.kafka import ensure_topics
from kezek.lags import consumer_lags
from tests.fakes.consumer import POSITION_DATA, REFERRAL_DATA, Claims, no_database

pytestmark = pytest.mark.integration

BUSY = 60           # more than one poll takes: the partition is left half handed out
POLL = 5
POSITION = ("application.position_changed.v1", POSITION_DATA)
REFERRAL = ("referral.issued.v1", REFERRAL_DATA)


def send(bootstrap: str, topic: str, kind: tuple[str, dict], n: int) -> list[str]:
    events = [new_event(kind[0], f"s{i}", kind[1], source="test") for i in range(n)]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for event in events:
        producer.send(topic, event.to_json().encode(), key=event.subject.encode())
    producer.flush()
    producer.close()
    return [e.id for e in events]


def polled_until(consumer: IdempotentConsumer, done, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        consumer.poll_once(timeout_ms=200)


@pytest.mark.parametrize("partitions", [1, 3])
def test_the_other_topics_records_held_when_the_first_topics_are_read_are_all_handled_afterwards(kafka_bootstrap,
                                                                                                 partitions):
    tag = uuid.uuid4().hex[:6]
    busy, urgent = f"kezek.busy-{tag}", f"kezek.urgent-{tag}"
    ensure_topics(kafka_bootstrap, [busy], partitions=partitions)
    ensure_topics(kafka_bootstrap, [urgent], partitions=1)
    handled: list[str] = []
    consumer = IdempotentConsumer(name=f"first-{tag}", topics=[busy, urgent], first=[urgent],
                                  bootstrap=kafka_bootstrap, sessions=no_database, outbox=Claims(),
                                  handle=lambda s, event: handled.append(event.id), max_poll_records=POLL)
    try:
        positions = send(kafka_bootstrap, busy, POSITION, BUSY)
        polled_until(consumer, lambda: handled)
        assert 0 < len(handled) < BUSY, "the busy partition is part handed out"

        referral = send(kafka_bootstrap, urgent, REFERRAL, 1)
        polled_until(consumer, lambda: len(handled) == BUSY + 1)

        # Every record handed out, none left parked. Which came first depends
        # on when the referral's fetch arrives: `first` puts the first
        # topics' records before the others' among those the consumer holds
        # (tests/unit/test_consumer_first_topics.py), and under load a
        # consumer can hand out all the positions it holds before the
        # referral's fetch comes back (make test beside a full-size day did).
        assert sorted(handled) == sorted(positions + referral), \
            f"{BUSY + 1 - len(handled)} records were never handed out"
    finally:
        consumer.close()


def test_a_record_sent_to_an_idle_consumer_is_handled_at_once_not_after_the_fetchs_hold(kafka_bootstrap):
    """A consumer without `first` topics lets the broker hold an empty fetch
    (`IDLE_FETCH_WAIT_MS`, fewer fetches at rest): that must not hold back
    a record that arrives meanwhile. Here the hold is 20 s; the record,
    sent 3 s into it, is handled within 8 s of being sent."""
    tag = uuid.uuid4().hex[:6]
    topic = f"kezek.quiet-{tag}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    handled: list[str] = []
    consumer = IdempotentConsumer(name=f"quiet-{tag}", topics=[topic], bootstrap=kafka_bootstrap,
                                  sessions=no_database, outbox=Claims(),
                                  handle=lambda s, event: handled.append(event.id), fetch_max_wait_ms=20_000)
    try:
        assert consumer.consumer.config["fetch_max_wait_ms"] == 20_000
        deadline = time.monotonic() + 30
        while not consumer.consumer.assignment() and time.monotonic() < deadline:
            consumer.poll_once(timeout_ms=200)
        assert consumer.consumer.assignment(), "the consumer joined its group"
        idle_until = time.monotonic() + 3      # a fetch of nothing is now held by the broker
        while time.monotonic() < idle_until:
            consumer.poll_once(timeout_ms=200)
        assert handled == []

        sent_at = time.monotonic()
        sent = send(kafka_bootstrap, topic, POSITION, 1)
        polled_until(consumer, lambda: handled, seconds=8)
        assert handled == sent, f"nothing handled {time.monotonic() - sent_at:.1f} s after the record was sent"
    finally:
        consumer.close()


def test_only_a_consumer_without_first_topics_lets_the_broker_hold_its_empty_fetches_longer(kafka_bootstrap):
    """A consumer with `first` topics polls them alone, with a fetch of
    theirs alone; held for long, it would hold back its other topics'
    records, so it keeps kafka-python's 500 ms."""
    tag = uuid.uuid4().hex[:6]
    busy, urgent = f"kezek.busy-{tag}", f"kezek.urgent-{tag}"
    common = dict(bootstrap=kafka_bootstrap, sessions=no_database, outbox=Claims(), handle=lambda s, event: None)
    plain = IdempotentConsumer(name=f"plain-{tag}", topics=[busy, urgent], **common)
    firsts = IdempotentConsumer(name=f"firsts-{tag}", topics=[busy, urgent], first=[urgent], **common)
    try:
        assert IDLE_FETCH_WAIT_MS > 500
        assert plain.consumer.config["fetch_max_wait_ms"] == IDLE_FETCH_WAIT_MS
        assert firsts.consumer.config["fetch_max_wait_ms"] == 500
    finally:
        plain.close()
        firsts.close()


def test_deployments_sharing_a_broker_consume_in_consumer_groups_of_their_own(kafka_bootstrap):
    """Two deployments' consumers of one name on one broker: each joins a
    group of its own, alone in it, and handles its own deployment's events.
    In one shared group each would rebalance the other, and a member that
    assigned without the other's topics' metadata left them unread."""
    tag = uuid.uuid4().hex[:6]
    prefixes = (f"a{tag}", f"b{tag}")
    handled: dict[str, list[str]] = {p: [] for p in prefixes}
    for prefix in prefixes:
        ensure_topics(kafka_bootstrap, [f"{prefix}.application"], partitions=3)
    consumers = {p: IdempotentConsumer(name="notifications", topics=[f"{p}.application"], bootstrap=kafka_bootstrap,
                                       sessions=no_database, outbox=Claims(),
                                       handle=lambda s, event, p=p: handled[p].append(event.id))
                 for p in prefixes}
    try:
        sent = {p: send(kafka_bootstrap, f"{p}.application", POSITION, 10) for p in prefixes}
        deadline = time.monotonic() + 60
        while any(len(handled[p]) < 10 for p in prefixes) and time.monotonic() < deadline:
            for consumer in consumers.values():
                consumer.poll_once(timeout_ms=200)
        groups = {p: {g: v["members"] for g, v in consumer_lags(kafka_bootstrap, p).items()} for p in prefixes}
    finally:
        for consumer in consumers.values():
            consumer.close()
    assert {p: sorted(ids) for p, ids in handled.items()} == {p: sorted(ids) for p, ids in sent.items()}
    assert groups == {p: {f"{p}.notifications": 1} for p in prefixes}


def test_a_deployment_on_the_default_prefix_keeps_the_bare_group_names_and_so_its_committed_offsets():
    assert group_for("kezek", "notifications") == "notifications"
    assert group_for("kg", "notifications") == "kg.notifications"
