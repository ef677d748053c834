"""What a kindergarten and its district office may do with places and
children (DOMAIN.md section 3): a child leaves, a kindergarten is edited or
closed, the publication schedule goes by birth year and category.

A kindergarten closes only when nothing is held or taken there. Closing
withdraws its free places and calls off its scheduled publications, and it
leaves the preferences of the children who wait for it; a held place (a
live referral) or a taken one (an enrolled child) is a promise to a family
that the closing must not break: the referrals run out first (enrolment,
cancellation or expiry, no new ones are issued since no place is free) and
the kindergarten records each enrolled child leaving (or transferred).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.queue.domain.policy import Policy
from services.queue.domain.refusals import Invalid, Refused


def check_can_leave(status: str) -> None:
    """Only an enrolled child leaves a kindergarten."""
    if status != "enrolled":
        raise Refused("leave_not_enrolled", field="application_id", status=status)


def check_closable(kindergarten: str, held: int, enrolled: int) -> None:
    if held or enrolled:
        raise Refused("kindergarten_not_empty", field="kindergarten", kindergarten=kindergarten, held=held,
                      enrolled=enrolled)


def check_languages_kept(kindergarten: str, before: Sequence[str], after: Sequence[str],
                         with_places: Iterable[str]) -> None:
    """A kindergarten keeps teaching in every language it has places in
    (free, held or taken): its children and referrals stay valid."""
    if not after:
        return      # no list: it teaches in any language
    for language in sorted(set(with_places)):
        if language not in after:
            raise Invalid("kindergarten_language_in_use", field="languages", kindergarten=kindergarten,
                          language=language)


@dataclass(frozen=True)
class Scheduled:
    """A publication waiting for its moment, as the schedule orders it."""

    publish_at: datetime
    cohort: int
    for_category: str | None
    kindergarten: str
    language: str


def schedule_key(p: Scheduled, policy: Policy) -> tuple:
    """The order of the publication schedule (DOMAIN.md section 3: by birth
    year and category, older cohorts and the extraordinary right first): by
    moment; at one moment the older birth year first, then places reserved
    for a category by that category's rank (the extraordinary right first),
    places open to all last; then kindergarten and language."""
    if p.for_category is None:
        rank = 10 ** 9
    else:
        rank = next((c.rank for c in policy.categories if c.code == p.for_category), 10 ** 9 - 1)
    return (p.publish_at, p.cohort, rank, p.kindergarten, p.language)
