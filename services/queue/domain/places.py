"""What a publication of free places must meet (DOMAIN.md section 3): a
known kindergarten that teaches in the language, 1 to 10,000 places, a
birth year of preschool children, a known category to reserve them for."""
from __future__ import annotations

from collections.abc import Sequence

from services.queue.domain.entries import check_teaches
from services.queue.domain.policy import Policy
from services.queue.domain.refusals import Invalid


def check_publication(kindergarten: str, taught: Sequence[str] | None, language: str, count: object, cohort: int,
                      for_category: str | None, policy: Policy, this_year: int) -> None:
    """`taught`: the kindergarten's languages, None if it is unknown."""
    check_teaches(kindergarten, taught, language, field="language")
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 10_000:
        raise Invalid("count_out_of_range", field="count")
    check_cohort(cohort, this_year)
    if for_category is not None:
        policy.category(for_category, field="for_category")


def check_cohort(cohort: int, this_year: int) -> None:
    """Places are published for the birth years of preschool children."""
    if not this_year - 8 <= cohort <= this_year:
        raise Invalid("cohort_not_preschool", field="cohort", cohort=cohort)
