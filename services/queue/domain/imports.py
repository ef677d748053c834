"""What a live referral moved from a previous system (the Balalyk
migration) must meet to be taken in as it stands."""
from __future__ import annotations

from collections.abc import Sequence

from services.queue.domain.commands import ImportReferral
from services.queue.domain.entries import check_teaches
from services.queue.domain.places import check_cohort
from services.queue.domain.policy import Policy
from services.queue.domain.refusals import Invalid, NotFound, Refused
from workflows.rules import LIVE_STATES


def check_imported_referral(it: ImportReferral, entry: tuple[str, int, str] | None,
                            taught: Sequence[str] | None, policy: Policy, this_year: int) -> None:
    """`entry`: the child's entry as (status, cohort, language), None if the
    queue has none; `taught`: the kindergarten's languages, None if unknown."""
    if it.state not in LIVE_STATES:
        raise Invalid("import_not_live", field="state", state=it.state)
    if not it.needs_confirmation and (it.state == "awaiting_confirmation" or it.extended):
        raise Invalid("import_nothing_to_confirm", field="needs_confirmation")
    if it.deadline <= it.issued_at:
        raise Invalid("import_deadline_not_after_issue", field="deadline", deadline=it.deadline.isoformat(),
                      issued_at=it.issued_at.isoformat())
    if entry is None:
        raise NotFound("entry_unknown", field="application_id", application_id=it.application_id)
    status, cohort, language = entry
    if status != "queued":
        raise Refused("import_entry_not_waiting", field="application_id", status=status)
    if (it.cohort, it.language) != (cohort, language):
        raise Invalid("import_place_of_other_group", field="cohort", place=f"{it.kindergarten}/{it.cohort}/"
                      f"{it.language}", cohort=cohort, language=language)
    check_teaches(it.kindergarten, taught, it.language, field="language")
    check_cohort(it.cohort, this_year)
    if it.for_category is not None:
        policy.category(it.for_category, field="for_category")
