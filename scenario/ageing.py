"""Ageing out on the scenario's timeline (DOMAIN.md section 3; the rule is
the queue's: services/queue/domain/ageing.py). At 00:00 of each day the
waiting children (queued or on the stop-list) who reach school age that day
leave the queue; a child whose referral ends, or whose stop-list ends, on or
after that birthday leaves then instead of returning. The world asks
`leaves_queue` in its activities; the runner calls `age_out_due` at the
start of each day, before the day's allocation."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from services.queue.domain.ageing import WAITING, reached_school_age

if TYPE_CHECKING:
    from scenario.world import Cause, Child, World

AGED_OUT = "aged_out"


def leaves_queue(world: "World", child: "Child", at: datetime) -> bool:
    """True if the child has reached school age at the local moment `at`."""
    return reached_school_age(child.spec.birth_date, world.cal.local_date(at), world.policy)


def age_out(world: "World", child: "Child", cause: "Cause", at: datetime) -> None:
    child.status, child.kindergarten = AGED_OUT, None
    world.line(cause, at, "application.aged_out", child=child.alias)


def age_out_due(world: "World", moment: datetime, cause: "Cause") -> int:
    """The daily job: every waiting child whose school-age birthday is today
    (or past) leaves the queue at this day's 00:00. Returns how many."""
    due = [ch for ch in world.children.values() if ch.status in WAITING and leaves_queue(world, ch, moment)]
    for child in due:
        age_out(world, child, cause, moment)
    return len(due)
