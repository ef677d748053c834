"""What an IdempotentConsumer (kezek/consumer.py) needs of its database, for
tests of its polling and committing: sessions whose transactions do
nothing, `processed_events` as a set (an event id takes effect once), and
the data of the two kinds of record the `first` topics' tests read."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def no_database():
    """A session factory's session, whose `begin()` does nothing."""
    class Session:
        def begin(self):
            return contextlib.nullcontext()
    yield Session()


class Claims:
    """processed_events: an event id takes effect once."""

    def __init__(self):
        self.seen: set[str] = set()

    def claim_many(self, session, consumer, event_ids):
        fresh = set(event_ids) - self.seen
        self.seen |= fresh
        return fresh


# A distribution day's busy topic and the fact that must not wait behind it.
POSITION_DATA = {"application_id": "a1", "position": 20}
REFERRAL_DATA = {"referral_id": "r1", "application_id": "a1", "kindergarten_id": "k1",
                 "deadline": "2027-03-08T18:00:00Z"}
