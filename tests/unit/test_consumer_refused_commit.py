"""A commit the group's coordinator refuses (its broker died, a member died
and the group rebalanced): a consumer commits once a second, after its
poll's records took effect, and a refused commit is tried again with the
next one; a partition the rebalance took away is left to its next owner
(kezek/consumer.py). Before that, a commit after each partition's batch
stopped the poll there, and the partitions not yet handled had to be read
again, never skipped. kafka-python's fetch position is already
past them, and a partition that stays assigned through the rebalance keeps
that position: without the rewind their events were never handled (the
cluster test's gateway-cabinet-stamps group once missed six). The webhooks'
ingest reads the public topic the same way."""
from __future__ import annotations


import pytest
import sqlalchemy as sa
from kafka import TopicPartition
from kafka.errors import CommitFailedError

import kezek.consumer
from kezek.consumer import COMMIT_EVERY, IdempotentConsumer
from kezek.db import make_engine, make_session_factory, unit_of_work
from kezek.events import new_event
from kezek.migrations import upgrade
from services.gateway.public.config import PublicSettings
from services.gateway.public.models import WebhookDelivery
from services.gateway.public.webhooks import Dispatcher, create_subscription
from tests.fakes.consumer import Claims, no_database

FIRST = TopicPartition("kezek.referral", 0)
SECOND = TopicPartition("kezek.referral", 1)
TAKEN_AWAY = TopicPartition("kezek.referral", 2)


def referral_issued(referral_id: str) -> bytes:
    return new_event("referral.issued.v1", referral_id, {
        "referral_id": referral_id, "application_id": "a1", "kindergarten_id": "k1",
        "deadline": "2027-03-08T18:00:00Z"}, source="test").to_json().encode()


def place_published(kindergarten_id: str) -> bytes:
    return new_event("public.place.published.v1", kindergarten_id, {
        "kindergarten_id": kindergarten_id, "cohort": 2021, "language": "ky", "count": 1,
        "district": "41711100000000"}, source="test").to_json().encode()


class Record:
    def __init__(self, tp: TopicPartition, offset: int, value: bytes):
        self.topic, self.partition, self.offset = tp.topic, tp.partition, offset
        self.value = value
        self.headers, self.key = [], None


class PositionedKafka:
    """kafka-python's fetch positions: a poll hands out each assigned
    partition's records from its position and moves it past them; `seek`
    moves it back; a commit may be refused."""

    def __init__(self):
        self.log: dict[TopicPartition, list[Record]] = {}
        self.position: dict[TopicPartition, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.refuse_commits = 0
        self.committed: dict[TopicPartition, int] = {}
        self.sought: list[TopicPartition] = []
        self._subscription = self

    def subscribe(self, topics):
        pass

    def append(self, tp: TopicPartition, *referral_ids: str, make=referral_issued) -> None:
        self.assigned.add(tp)
        self.position.setdefault(tp, 0)
        log = self.log.setdefault(tp, [])
        log.extend(Record(tp, len(log) + i, make(r)) for i, r in enumerate(referral_ids))

    def assignment(self):
        return set(self.assigned)

    def poll(self, timeout_ms=0, max_records=500):
        out = {}
        for tp in sorted(self.assigned, key=lambda t: t.partition):
            records = self.log[tp][self.position[tp]:]
            if records:
                out[tp] = records
                self.position[tp] = records[-1].offset + 1
        return out

    def seek(self, tp, offset):
        if tp not in self.assigned:
            raise AssertionError(f"seek of {tp}, not assigned (kafka-python raises IllegalStateError)")
        self.sought.append(tp)
        self.position[tp] = offset

    def commit(self, offsets):
        if self.refuse_commits:
            self.refuse_commits -= 1
            raise CommitFailedError("the group has already rebalanced")
        for tp, meta in offsets.items():
            self.committed[tp] = meta.offset

    def highwater(self, tp):
        return None

    def close(self, autocommit=False):
        pass


@pytest.fixture
def kafka(monkeypatch) -> PositionedKafka:
    fake = PositionedKafka()
    monkeypatch.setattr(kezek.consumer, "KafkaConsumer", lambda **config: fake)
    return fake


def consumer_of(handled: list[str]) -> IdempotentConsumer:
    return IdempotentConsumer(name="gateway-cabinet-stamps", topics=["kezek.referral"], bootstrap="b:9092",
                              sessions=no_database, outbox=Claims(),
                              handle=lambda s, event: handled.append(event.data["referral_id"]))


def commit_due(consumer: IdempotentConsumer) -> None:
    """A second on: the consumer's next poll commits (kezek/consumer.py, COMMIT_EVERY)."""
    consumer._committed_at -= COMMIT_EVERY


def test_a_refused_commit_comes_after_the_polls_records_took_effect_and_is_tried_again(kafka):
    handled: list[str] = []
    consumer = consumer_of(handled)
    kafka.append(FIRST, "r1", "r2")
    kafka.append(SECOND, "r3")
    kafka.refuse_commits = 1
    commit_due(consumer)

    with pytest.raises(CommitFailedError):
        consumer.poll_once()
    assert handled == ["r1", "r2", "r3"], "every partition's records took effect before the commit was refused"

    assert not consumer.poll_once(), "nothing is handed out again in this generation"
    assert kafka.committed == {tp: kafka.log[tp][-1].offset + 1 for tp in (FIRST, SECOND)}, \
        "the refused offsets are committed with the next commit"


def test_a_partition_the_rebalance_took_away_is_left_to_its_next_owner(kafka):
    handled: list[str] = []
    consumer = consumer_of(handled)
    kafka.append(FIRST, "r1")
    kafka.append(TAKEN_AWAY, "r2")
    kafka.append(SECOND, "r3")
    consumer.poll_once()
    kafka.assigned.discard(TAKEN_AWAY)
    commit_due(consumer)
    consumer.poll_once()
    assert sorted(handled) == ["r1", "r2", "r3"]
    assert kafka.committed == {FIRST: 1, SECOND: 1}, "its next owner reads r2 again, and drops it by its claim"


def test_a_refused_commit_leaves_the_webhook_ingests_other_partitions_to_be_read_again(kafka, tmp_path):
    url = f"sqlite:///{tmp_path}/gateway.db"
    upgrade("gateway", url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with unit_of_work(sessions) as s:
        create_subscription(s, "http://127.0.0.1:9/hook", ["*"], "a district's system", "test")
    dispatcher = Dispatcher(sessions, PublicSettings(_env_file=None, env="test"))
    kafka.append(FIRST, "kg-a", make=place_published)
    kafka.append(SECOND, "kg-b", make=place_published)
    kafka.refuse_commits = 1

    with pytest.raises(CommitFailedError):
        dispatcher.ingest_once(kafka)
    dispatcher.ingest_once(kafka)
    with engine.connect() as conn:
        subjects = sorted(conn.execute(sa.select(WebhookDelivery.subject)).scalars())
    engine.dispose()
    assert subjects == ["kg-a", "kg-b"], "each public event is queued for delivery once, none skipped"
    assert kafka.committed == {SECOND: 1}
    assert dispatcher.queued.is_set(), "the delivery loop of its process looks at once (Dispatcher.run_delivery)"
