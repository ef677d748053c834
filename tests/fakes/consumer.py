"""What an IdempotentConsumer (kezek/consumer.py) needs of its database, for
unit tests of its polling and committing: sessions whose transactions do
nothing, and `processed_events` as a set (an event id takes effect once)."""
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
