"""Who comes first (DOMAIN.md section 3): category rank, then the queue
date, then a stable tie-break; and who is old enough (2 full years on the
day of distribution)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple

from services.queue.domain.policy import Policy


class PlaceKey(NamedTuple):
    """Places belong to a kindergarten, a cohort and a language. A tuple:
    hashed and compared in C, since a national run looks up millions."""

    kindergarten: str
    cohort: int          # birth year
    language: str

    def __str__(self) -> str:
        return f"{self.kindergarten}/{self.cohort}/{self.language}"


@dataclass(frozen=True, slots=True)
class Applicant:
    """A child waiting in the queue, as the allocation sees it."""

    child_id: str
    birth_date: date
    category: str
    queue_date: datetime          # moment of submission, kept forever
    language: str
    preferences: tuple[str, ...]  # kindergarten ids, best first

    @property
    def cohort(self) -> int:
        return self.birth_date.year


# The rank of a category the policy no longer has: after every known one.
UNRANKED = 1 << 30


def rank_key(a: Applicant, policy: Policy) -> tuple:
    """Category rank, then queue date, then the child id as a stable tie-break."""
    return (policy.category(a.category).rank, a.queue_date, a.child_id)


def birthday_of_age(birth_date: date, years: int) -> date:
    """The first day on which a child born on `birth_date` has `years` full years.

    Born on 29 February: CIS civil codes end a term in years that falls in a
    month without the corresponding day on that month's last day, so in a
    common year the birthday counts as 28 February."""
    year = birth_date.year + years
    try:
        return birth_date.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def latest_birth_date_of_age(on: date, years: int) -> date:
    """Children born on or before this day have `years` full years on `on`:
    the same rule as `birthday_of_age`, as a bound a query can use."""
    year = on.year - years
    try:
        bound = on.replace(year=year)
    except ValueError:  # `on` is 29 February: born up to 29 Feb of a leap year
        bound = date(year, 2, 28)
    if on.month == 2 and on.day == 28 and _is_leap(year) and not _is_leap(on.year):
        # Born on 29 February of a leap year: its birthday in a common year
        # is 28 February (see birthday_of_age).
        bound = date(year, 2, 29)
    return bound


def min_age_date(birth_date: date, policy: Policy) -> date:
    """The first day on which the child has `min_age_years` full years."""
    return birthday_of_age(birth_date, policy.min_age_years)


def reached_min_age(birth_date: date, on: date, policy: Policy) -> bool:
    """True if the child has reached the minimum age (2 FULL years) on `on`."""
    return on >= min_age_date(birth_date, policy)


def latest_eligible_birth_date(on: date, policy: Policy) -> date:
    """Children born on or before this day have reached the minimum age on `on`."""
    return latest_birth_date_of_age(on, policy.min_age_years)


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
