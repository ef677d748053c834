"""How the background loops that look for work in a table pace themselves
when there is none: the outbox relays, the notifications' dispatchers, the
queue's allocator and its workflow starter, the webhooks' delivery.

A loop that finds nothing waits `first` seconds, then twice as long after
each further round that finds nothing, up to `longest`; a round that finds
work starts over at `first`. At rest the system's loops then look about
once a `longest` instead of four or five times a second (each look is a
transaction: at rest they were a third of the system's CPU), and work that
comes after a quiet time waits at most `longest` for its first look. A
busy loop never pauses: it looks again as soon as a round found work.
"""
from __future__ import annotations

# The longest pause of an idle loop: how late, at most, the first event,
# message or referral after a quiet time is looked at.
LONGEST_IDLE = 1.0


class IdlePause:
    """The pause after each round of a loop that found nothing."""

    def __init__(self, first: float, longest: float = LONGEST_IDLE):
        self.first = first
        self.longest = max(first, longest)
        self._next = first

    def next(self) -> float:
        """The pause after a round that found nothing (the next is longer)."""
        pause = self._next
        self._next = min(pause * 2, self.longest)
        return pause

    def found(self) -> None:
        """A round found work: the next idle pause is `first` again."""
        self._next = self.first
