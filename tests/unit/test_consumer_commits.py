"""When a consumer commits its offsets (kezek/consumer.py): at most once a
second, for every partition handled since, in one request; at once after a
failed batch and on close; never for a partition a rebalance took away.
Committed later, a record is at worst delivered again and dropped by its
claimed event id."""
from __future__ import annotations

import pytest

from kezek.consumer import COMMIT_EVERY
from tests.unit.test_consumer_first_topics import (  # noqa: F401
    APPLICATION, APPLICATION_2, REFERRAL, Record, consumer_of, kafka,
)

POSITION = "application.position_changed.v1"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def committing(kafka, handled, **kw):  # noqa: F811
    consumer, fetched = consumer_of(kafka, handled, **kw)
    ends: dict = {}

    def hold(tp, *types):       # offsets go on from the partition's last, as Kafka's do
        fetched.assigned.add(tp)
        start = ends.get(tp, 0)
        ends[tp] = start + len(types)
        fetched.held.setdefault(tp, []).extend(Record(tp, start + i, t) for i, t in enumerate(types))
    fetched.hold = hold
    commits: list[dict] = []
    fetched.commit = lambda offsets, **_timeout: commits.append({tp: om.offset for tp, om in offsets.items()})
    consumer.clock = clock = Clock()
    consumer._committed_at = clock.now
    return consumer, fetched, commits, clock


def test_polls_within_a_second_commit_nothing_and_the_next_poll_commits_every_partition_at_once(kafka):  # noqa: F811
    handled: list[str] = []
    consumer, fetched, commits, clock = committing(kafka, handled)
    for _ in range(5):
        fetched.hold(APPLICATION, POSITION, POSITION)
        fetched.hold(REFERRAL, "referral.issued.v1")
        consumer.poll_once(timeout_ms=0)
        clock.now += COMMIT_EVERY / 10
    assert len(handled) == 15
    assert commits == [], "no commit after each poll"

    clock.now += COMMIT_EVERY
    assert consumer.poll_once(timeout_ms=0) == 0, "a poll without records"
    assert commits == [{APPLICATION: 10, REFERRAL: 5}], "one request, each partition's next offset"

    consumer.poll_once(timeout_ms=0)
    assert len(commits) == 1, "nothing new handled, nothing committed again"


def test_records_of_types_the_consumer_does_not_take_are_committed_with_the_others(kafka):  # noqa: F811
    handled: list[str] = []
    consumer, fetched, commits, clock = committing(kafka, handled)
    consumer.types = {"referral.issued.v1"}
    fetched.hold(APPLICATION, POSITION, POSITION, POSITION)
    consumer.poll_once(timeout_ms=0)
    clock.now += COMMIT_EVERY
    consumer.poll_once(timeout_ms=0)
    assert handled == []
    assert commits == [{APPLICATION: 3}]


def test_a_failed_batch_commits_at_once_what_took_effect_before_it(kafka):  # noqa: F811
    handled: list[str] = []

    def handle(session, event):
        if event.type == "referral.issued.v1":
            raise ValueError("cannot be handled")
        handled.append(event.type)

    consumer, fetched, commits, clock = committing(kafka, handled)
    consumer.handle = handle
    fetched.hold(APPLICATION, POSITION, POSITION)
    consumer.poll_once(timeout_ms=0)
    assert commits == []
    fetched.seek = lambda tp, offset: None
    fetched.hold(REFERRAL, "referral.issued.v1")
    with pytest.raises(ValueError):
        consumer.poll_once(timeout_ms=0)
    assert commits == [{APPLICATION: 2}], "the handled records' offsets, not the failed one's"


def test_closing_commits_what_was_handled(kafka):  # noqa: F811
    handled: list[str] = []
    consumer, fetched, commits, _clock = committing(kafka, handled)
    fetched.hold(APPLICATION_2, POSITION)
    consumer.poll_once(timeout_ms=0)
    consumer.close()
    assert commits == [{APPLICATION_2: 1}]


def test_a_partition_a_rebalance_took_away_is_left_to_its_new_owner(kafka):  # noqa: F811
    handled: list[str] = []
    consumer, fetched, commits, clock = committing(kafka, handled)
    fetched.hold(APPLICATION, POSITION)
    fetched.hold(APPLICATION_2, POSITION)
    consumer.poll_once(timeout_ms=0)
    fetched.assigned.discard(APPLICATION)
    clock.now += COMMIT_EVERY
    consumer.poll_once(timeout_ms=0)
    assert commits == [{APPLICATION_2: 1}]
