"""Ageing out (DOMAIN.md section 3): a child who reaches school age (policy
`school_age_years`, 7 by default) leaves the queue at 00:00 local time of
that birthday. A child holding a live referral keeps it; if the referral
ends without enrolment on or after that birthday (expired, cancelled,
privilege rejected), the child leaves the queue then instead of returning
to it or going on the stop-list, and so does a child whose stop-list ends
after it."""
from __future__ import annotations

from datetime import date

from services.queue.domain.policy import Policy
from services.queue.domain.ranking import birthday_of_age, latest_birth_date_of_age

# Entry statuses in which a child waits in the queue (and so ages out at
# its birthday); a referred child keeps its referral, an enrolled one its place.
WAITING = ("queued", "paused")


def school_age_date(birth_date: date, policy: Policy) -> date:
    """The birthday at whose 00:00 the child leaves the queue."""
    return birthday_of_age(birth_date, policy.school_age_years)


def reached_school_age(birth_date: date, on: date, policy: Policy) -> bool:
    """True if on `on` (a local date) the child no longer belongs in the queue."""
    return on >= school_age_date(birth_date, policy)


def latest_school_age_birth_date(on: date, policy: Policy) -> date:
    """Waiting children born on or before this day leave the queue on `on`
    (or have left it: a day the job missed is caught up)."""
    return latest_birth_date_of_age(on, policy.school_age_years)
