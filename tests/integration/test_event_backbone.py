"""The event backbone end to end on real PostgreSQL and a real Kafka broker:
one state change becomes exactly one event, consumed with exactly one
effect, through a broker restart and a consumer killed between its database
commit and its offset commit."""
from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kezek.consumer import IdempotentConsumer
from kezek.db import make_engine, make_session_factory, unit_of_work
from kezek.events import Event, InvalidEvent
from kezek.infra.kafka import ensure_topics
from kezek.outbox import Outbox
from kezek.relay import OutboxRelay, wait_until_relayed

pytestmark = pytest.mark.integration
TOPIC = "kezek.backbone"


class SenderBase(DeclarativeBase):
    pass


class Probe(SenderBase):
    __tablename__ = "probes"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    note: Mapped[str] = mapped_column(sa.String(200))


class ReceiverBase(DeclarativeBase):
    pass


class Receipt(ReceiverBase):
    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(primary_key=True)
    probe_id: Mapped[str] = mapped_column(sa.String(36))


sender_outbox = Outbox(SenderBase.metadata, source="sender")
receiver_outbox = Outbox(ReceiverBase.metadata, source="receiver")


def write_probe(sessions, note: str) -> str:
    probe_id = str(uuid.uuid4())
    with unit_of_work(sessions) as session:
        session.add(Probe(id=probe_id, note=note))
        sender_outbox.add(session, "backbone.probe.v1", probe_id, {"probe_id": probe_id, "note": note})
    return probe_id


def record_receipt(session, event: Event) -> None:
    session.add(Receipt(probe_id=event.data["probe_id"]))


def receipts(sessions, probe_id: str) -> int:
    with sessions() as s:
        return s.scalar(sa.select(sa.func.count()).where(Receipt.probe_id == probe_id))


def messages_on_topic(bootstrap: str, event_id: str) -> int:
    reader = KafkaConsumer(TOPIC, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                           enable_auto_commit=False, consumer_timeout_ms=3000)
    try:
        return sum(1 for m in reader if Event.from_json(m.value).id == event_id)
    finally:
        reader.close()


@pytest.fixture
def databases(pg_url):
    sender = make_engine(pg_url("sender"))
    receiver = make_engine(pg_url("receiver"))
    SenderBase.metadata.create_all(sender)
    ReceiverBase.metadata.create_all(receiver)
    yield make_session_factory(sender), make_session_factory(receiver)
    sender.dispose()
    receiver.dispose()


def make_consumer(bootstrap, sessions, name="receiver-probes"):
    return IdempotentConsumer(name=name, topics=[TOPIC], bootstrap=bootstrap, sessions=sessions,
                              outbox=receiver_outbox, handle=record_receipt)


def processed_until_one_poll_brings_some(consumer, polls: int = 40) -> list[bool]:
    """What `consumer.process` answered for each record of the first poll that brought any."""
    for _ in range(polls):
        done = [consumer.process(record.value)
                for records in consumer.consumer.poll(timeout_ms=500).values() for record in records]
        if done:
            return done
    return []


def failed_polls(consumer, failure: type[Exception], polls: int, until) -> int:
    """Polls until `until()` holds (at most `polls` times), then closes the
    consumer: how many polls the handler's `failure` broke."""
    failures = 0
    for _ in range(polls):
        try:
            consumer.poll_once(timeout_ms=300)
        except failure:
            failures += 1
        if until(failures):
            break
    consumer.close()
    return failures


def test_one_state_change_is_one_event_consumed_once_across_broker_restart_and_consumer_crash(private_kafka, databases):
    sender, receiver = databases
    ensure_topics(private_kafka.bootstrap, [TOPIC])
    relay = OutboxRelay(sender, sender_outbox, private_kafka.bootstrap)

    probe_id = write_probe(sender, "written before the broker went down")
    with sender() as s:
        event_id = s.scalar(sa.select(sender_outbox.table.c.event_id))

    # The broker is down between the write and the relay: nothing is lost.
    private_kafka.stop()
    with pytest.raises(Exception):
        relay.relay_once()
    relay.close()
    with sender() as s:
        assert sender_outbox.pending(s) == 1
    private_kafka.start()
    wait_until_relayed(relay, timeout=60)
    relay.close()
    with sender() as s:
        assert sender_outbox.pending(s) == 0
    assert messages_on_topic(private_kafka.bootstrap, event_id) == 1

    # The consumer commits its database transaction, then dies before it
    # commits the offset: the broker delivers the event again.
    first = make_consumer(private_kafka.bootstrap, receiver)
    delivered = processed_until_one_poll_brings_some(first)
    first.consumer.close(autocommit=False)
    assert delivered == [True]
    assert receipts(receiver, probe_id) == 1

    second = make_consumer(private_kafka.bootstrap, receiver)
    redelivered = processed_until_one_poll_brings_some(second)
    second.close()
    assert redelivered == [False], "the redelivered event must be recognised as a repeat"
    assert receipts(receiver, probe_id) == 1


def test_relay_resending_after_a_crash_before_marking_gives_one_effect(kafka_bootstrap, databases):
    sender, receiver = databases
    ensure_topics(kafka_bootstrap, [TOPIC])
    relay = OutboxRelay(sender, sender_outbox, kafka_bootstrap)
    probe_id = write_probe(sender, "sent twice")
    wait_until_relayed(relay)
    # A relay that died after the broker's ack but before marking the row
    # sends it again.
    with sender() as s, s.begin():
        s.execute(sender_outbox.table.update().values(sent_at=None))
    wait_until_relayed(relay)
    relay.close()

    consumer = make_consumer(kafka_bootstrap, receiver, name=f"receiver-{uuid.uuid4().hex[:6]}")
    outcomes = []
    for _ in range(60):
        for records in consumer.consumer.poll(timeout_ms=500).values():
            for record in records:
                if Event.from_json(record.value).subject == probe_id:
                    outcomes.append(consumer.process(record.value))
        if len(outcomes) >= 2:
            break
    consumer.close()
    assert outcomes == [True, False], "the same event arrives twice and takes effect once"
    assert receipts(receiver, probe_id) == 1


def test_a_relays_claim_goes_to_the_broker_in_one_request_not_in_several(kafka_bootstrap, databases):
    """A distribution day relays hundreds of thousands of events. Sent in
    kafka-python's batches of 16 KiB, each taken by its sender thread as
    soon as it filled, a claim of 500 events went out in about seven
    requests, each costing the relay and the broker its own round. The
    relay's producer batches a claim whole: it flushes after every claim."""
    sender, _ = databases
    ensure_topics(kafka_bootstrap, [TOPIC])
    with unit_of_work(sender) as session:
        session.execute(sender_outbox.table.delete())
        for i in range(500):         # each about the size of a position event
            sender_outbox.add(session, "backbone.probe.v1", f"probe-{i}", {"probe_id": f"probe-{i}", "note": "x" * 190})
    relay = OutboxRelay(sender, sender_outbox, kafka_bootstrap, batch_size=500)
    try:
        assert relay.relay_once() == 500
        sent = relay._producer.metrics()["producer-metrics"]
    finally:
        relay.close()
    # One request when the claim is batched within the linger (a loaded
    # machine may stretch it to two or three); 71 a request before.
    assert sent["records-per-request-avg"] >= 500 / 3, f"{sent['records-per-request-avg']:.0f} records a request"


def test_rolled_back_state_change_writes_no_event(databases):
    sender, _ = databases
    with pytest.raises(RuntimeError):
        with unit_of_work(sender) as session:
            session.add(Probe(id=str(uuid.uuid4()), note="never committed"))
            sender_outbox.add(session, "backbone.probe.v1", "x", {"probe_id": "x", "note": "never"})
            raise RuntimeError("the use case failed after writing")
    with sender() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Probe)) == 0
        assert sender_outbox.pending(s) == 0


def test_event_whose_data_breaks_its_schema_is_never_written(databases):
    sender, _ = databases
    with pytest.raises(InvalidEvent, match="probe_id"):
        with unit_of_work(sender) as session:
            sender_outbox.add(session, "backbone.probe.v1", "x", {"note": "no probe id"})


def test_consumer_retries_a_record_whose_handler_failed_instead_of_skipping_it(kafka_bootstrap, databases):
    sender, receiver = databases
    ensure_topics(kafka_bootstrap, [TOPIC])
    relay = OutboxRelay(sender, sender_outbox, kafka_bootstrap)
    failing = write_probe(sender, "its first handling fails")
    following = write_probe(sender, "comes after it")
    wait_until_relayed(relay)
    relay.close()

    attempts: list[str] = []

    def flaky(session, event):
        attempts.append(event.data["probe_id"])
        if event.data["probe_id"] == failing and attempts.count(failing) == 1:
            raise ConnectionError("database went away mid-batch")
        record_receipt(session, event)

    consumer = IdempotentConsumer(name=f"flaky-{uuid.uuid4().hex[:6]}", topics=[TOPIC], bootstrap=kafka_bootstrap,
                                  sessions=receiver, outbox=receiver_outbox, handle=flaky)
    failures = failed_polls(consumer, ConnectionError, 80,
                            until=lambda _: receipts(receiver, failing) and receipts(receiver, following))
    assert failures == 1
    assert attempts.count(failing) == 2, "the failed record is handled again"
    assert receipts(receiver, failing) == 1 and receipts(receiver, following) == 1


@pytest.mark.parametrize("at_once", [False, True], ids=["handle", "handle_many"])
def test_a_batch_takes_each_event_once_and_stops_its_partition_at_a_record_that_keeps_failing(kafka_bootstrap,
                                                                                                databases, at_once):
    """The records of one poll are handled in one transaction; when it fails,
    the records before the failing one still take effect (one by one), the
    failing one stops its partition (nothing after it is handled, its offset
    is never committed), and an event delivered twice takes effect once;
    the same whether the consumer handles event by event or the batch's
    fresh events at once (`handle_many`)."""
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient

    from kezek.events import new_event

    _, receiver = databases
    topic = f"kezek.backbone-batch-{uuid.uuid4().hex[:6]}"
    ensure_topics(kafka_bootstrap, [topic], partitions=1)
    events = [new_event("backbone.probe.v1", f"p{i}", {"probe_id": f"p{i}-{uuid.uuid4().hex[:8]}", "note": str(i)},
                        source="sender") for i in range(5)]
    first, second, poison, after = events[0], events[1], events[2], events[3]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for event in (first, second, second, poison, after):
        producer.send(topic, event.to_json().encode(), key=b"one-partition")
    producer.flush()
    producer.close()

    def handle(session, event):
        if event.id == poison.id:
            raise ValueError("this record cannot be handled")
        record_receipt(session, event)

    group = f"batch-{uuid.uuid4().hex[:6]}"
    def handle_many(session, batch):
        for event in batch:
            handle(session, event)

    how = {"handle_many": handle_many} if at_once else {"handle": handle}
    consumer = IdempotentConsumer(name=group, topics=[topic], bootstrap=kafka_bootstrap, sessions=receiver,
                                  outbox=receiver_outbox, **how)
    failures = failed_polls(consumer, ValueError, 60, until=lambda failures: failures >= 3)
    assert failures >= 3, "the failing record is tried again, never skipped"
    assert receipts(receiver, first.data["probe_id"]) == 1
    assert receipts(receiver, second.data["probe_id"]) == 1, "delivered twice, takes effect once"
    assert receipts(receiver, poison.data["probe_id"]) == 0
    assert receipts(receiver, after.data["probe_id"]) == 0, "nothing after the failing record is handled"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        committed = admin.list_group_offsets([group])[group]
    finally:
        admin.close()
    assert [om.offset for om in committed.values()] == [3], "committed up to the failing record, not past it"
