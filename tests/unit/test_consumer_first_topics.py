"""A consumer's `first` topics (kezek/consumer.py): what it holds of them is
handled before any record of its other topics, whatever order kafka-python
fetched them in; the other partitions are read again afterwards."""
from __future__ import annotations


import pytest
from kafka import TopicPartition

import kezek.consumer
from kezek.consumer import IdempotentConsumer
from kezek.events import new_event
from tests.fakes.consumer import POSITION_DATA, REFERRAL_DATA, Claims, no_database

REFERRAL = TopicPartition("kezek.referral", 0)
APPLICATION = TopicPartition("kezek.application", 0)
APPLICATION_2 = TopicPartition("kezek.application", 1)


class Record:
    def __init__(self, tp: TopicPartition, offset: int, event_type: str):
        self.topic, self.partition, self.offset = tp.topic, tp.partition, offset
        self.value = _raw(event_type)
        self.headers, self.key = [], None


def _raw(event_type: str) -> bytes:
    data = POSITION_DATA if event_type.startswith("application.") else REFERRAL_DATA
    return new_event(event_type, "x", data, source="test").to_json().encode()


class FetchedKafka:
    """What kafka-python does with what it fetched: hands it out partition by
    partition in the order the fetches came, keeps a paused partition's for
    after `resume`, refuses to resume a partition not assigned."""

    def __init__(self, **_config):
        self.held: dict[TopicPartition, list[Record]] = {}
        self.paused: set[TopicPartition] = set()
        self.assigned: set[TopicPartition] = set()
        self.taken_away_in_poll: set[TopicPartition] = set()
        self._subscription = self

    def subscribe(self, topics):
        pass

    def hold(self, tp: TopicPartition, *types: str) -> None:
        self.assigned.add(tp)
        start = len(self.held.get(tp, []))
        self.held.setdefault(tp, []).extend(Record(tp, start + i, t) for i, t in enumerate(types))

    def assignment(self):
        return set(self.assigned)

    def pause(self, *tps):
        self.paused.update(tps)

    def resume(self, *tps):
        for tp in tps:
            if tp not in self.assigned:
                raise KeyError(tp)
            self.paused.discard(tp)

    def poll(self, timeout_ms=0, max_records=500):
        self.assigned -= self.taken_away_in_poll       # a rebalance: their state (paused too) is gone
        self.paused -= self.taken_away_in_poll
        self.taken_away_in_poll = set()
        out: dict[TopicPartition, list[Record]] = {}
        for tp in list(self.held):
            if tp in self.paused or tp not in self.assigned or max_records <= 0:
                continue
            taken, self.held[tp] = self.held[tp][:max_records], self.held[tp][max_records:]
            if taken:
                out[tp] = taken
                max_records -= len(taken)
        return out

    def commit(self, offsets):
        pass

    def highwater(self, tp):
        return None

    def close(self, autocommit=False):
        pass


@pytest.fixture
def kafka(monkeypatch):
    made = []
    monkeypatch.setattr(kezek.consumer, "KafkaConsumer", lambda **config: made.append(FetchedKafka()) or made[-1])
    return made


def consumer_of(kafka, handled: list[str], first=()) -> tuple[IdempotentConsumer, FetchedKafka]:
    consumer = IdempotentConsumer(name="notifications", topics=["kezek.application", "kezek.referral"],
                                  bootstrap="b:9092", sessions=no_database, outbox=Claims(),
                                  handle=lambda s, event: handled.append(event.type), first=first,
                                  max_poll_records=50)
    return consumer, kafka[-1]


def test_a_first_topics_record_held_behind_other_topics_records_is_handled_before_them(kafka):
    handled: list[str] = []
    consumer, fetched = consumer_of(kafka, handled, first=["kezek.referral"])
    fetched.hold(APPLICATION, *["application.position_changed.v1"] * 120)
    fetched.hold(APPLICATION_2, *["application.position_changed.v1"] * 30)
    fetched.hold(REFERRAL, "referral.issued.v1")

    consumer.poll_once()
    assert handled == ["referral.issued.v1"]
    while consumer.poll_once():
        pass
    assert len(handled) == 151, "the other topics' records are handled after it, none lost"
    assert not fetched.paused


def test_without_first_topics_records_are_handled_in_the_order_they_were_fetched(kafka):
    handled: list[str] = []
    consumer, fetched = consumer_of(kafka, handled)
    fetched.hold(APPLICATION, *["application.position_changed.v1"] * 120)
    fetched.hold(REFERRAL, "referral.issued.v1")

    for _ in range(3):
        consumer.poll_once()
    assert handled.index("referral.issued.v1") == 120


def test_a_poll_bringing_both_hands_the_first_topics_records_over_first(kafka):
    handled: list[str] = []
    consumer, fetched = consumer_of(kafka, handled, first=["kezek.referral"])
    # Nothing held yet of the first topic: the paused poll brings nothing ...
    fetched.hold(APPLICATION, *["application.position_changed.v1"] * 10)
    consumer.poll_once()
    # ... and a poll of every partition that brings both puts the first topic's first.
    fetched.hold(APPLICATION, "application.position_changed.v1")
    original = fetched.poll

    def both_at_once(timeout_ms=0, max_records=500):
        if fetched.paused:
            return {}
        fetched.hold(REFERRAL, "referral.issued.v1")
        return original(timeout_ms, max_records)
    fetched.poll = both_at_once
    handled.clear()
    consumer.poll_once()
    assert handled == ["referral.issued.v1", "application.position_changed.v1"]


def test_the_other_partitions_are_read_again_after_the_first_topics_poll_even_if_a_rebalance_took_some(kafka):
    handled: list[str] = []
    consumer, fetched = consumer_of(kafka, handled, first=["kezek.referral"])
    fetched.hold(APPLICATION, "application.position_changed.v1")
    fetched.hold(APPLICATION_2, "application.position_changed.v1")
    fetched.hold(REFERRAL, "referral.issued.v1")
    fetched.taken_away_in_poll = {APPLICATION_2}

    consumer.poll_once()
    assert not fetched.paused
    consumer.poll_once()
    assert handled == ["referral.issued.v1", "application.position_changed.v1"]
