"""Sign-in throttling, the rule every sign-in of Kezek shares (parents at
registration, staff at the staff pages; DOMAIN.md section 7: abuse limits
protect a family without letting a stranger lock it out). Pure, standard
library only.

Wrong passwords are counted under keys the caller chooses (per account and
client, per client, ...). After the `free` ones each further attempt waits
twice as long as the one before, from FIRST_WAIT up to LONGEST_WAIT, counted
from the last wrong password; after the wait the right password is heard:
there is no lock. Counts are forgotten a day after their last failure.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

FIRST_WAIT = timedelta(seconds=2)
LONGEST_WAIT = timedelta(minutes=15)
FORGOTTEN_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class Failures:
    """Wrong passwords counted under one key, and when the last one came."""

    count: int = 0
    last_at: datetime | None = None

    def current(self, now: datetime) -> int:
        if self.last_at is None or now - self.last_at >= FORGOTTEN_AFTER:
            return 0
        return self.count

    def one_more(self, now: datetime) -> "Failures":
        return Failures(self.current(now) + 1, now)


def wait_after(failures: int, free: int) -> timedelta:
    """The wait before the next attempt once `failures` wrong passwords were
    counted: none for the first `free`, then FIRST_WAIT doubling each time,
    never longer than LONGEST_WAIT."""
    beyond = failures - free
    if beyond <= 0:
        return timedelta(0)
    return min(FIRST_WAIT * 2 ** min(beyond - 1, 20), LONGEST_WAIT)


def wait(f: Failures, free: int, now: datetime) -> timedelta:
    """How long from `now` until the next attempt is heard (zero: now)."""
    count = f.current(now)
    after = wait_after(count, free)
    if not count or f.last_at is None or not after:
        # (a free attempt is heard even when a parallel one, begun later,
        # was counted first: its last_at may lie after this `now`)
        return timedelta(0)
    return max(timedelta(0), f.last_at + after - now)
