"""Refusals: what the rules or the state do not allow, as a stable code with
its parameters and the input at fault (`field`). Pages render the code in
the reader's language; API clients also get the English text below.

Standard library only: the rules raise these, the use cases raise these, the
HTTP app, the activities and the importer answer them."""
from __future__ import annotations

from typing import Any

from kezek import refusals

# The English text of every refusal the queue gives, by code.
TEXTS: dict[str, str] = {
    # entries
    "application_id_taken": "application id {application_id!r} is taken",
    "pin_taken": "this child is already in the queue (one entry per child)",
    "pin_format_kg": "pin: a Kyrgyz PIN is 14 digits starting with 1 or 2",
    "pin_format_kz": "pin: a Kazakh IIN is 12 digits",
    "pin_century_digit": "pin: the 7th digit of an IIN must be 1-6",
    "pin_check_digit": "pin: the IIN check digit does not match",
    "pin_impossible_date": "pin: it names an impossible birth date",
    "pin_country_unknown": "country: unknown country {country!r}",
    "birth_date_future": "pin: the birth date is in the future",
    "birth_date_contradicts_pin": "birth_date {given} contradicts the PIN, which says {birth}",
    "category_unknown": "unknown category {category!r}; known: {known}",
    "preferences_empty": "at least one kindergarten is needed",
    "preferences_repeated": "a kindergarten is listed twice",
    "preferences_too_many": "at most {most} kindergartens",
    "preferences_not_waiting": "preferences can change only while waiting (the entry is {status})",
    "kindergarten_unknown": "no kindergarten {kindergarten!r}",
    "kindergarten_language": "kindergarten {kindergarten!r} does not teach in {language!r} (it teaches in {languages})",
    "entry_unknown": "no queue entry {application_id!r}",
    "entry_unknown_pin": "no queue entry for this PIN",
    "note_required": "note: say why (a request's reference, or what it is for)",
    "entry_holds_referral": "the child holds a referral: cancel it first",
    "entry_enrolled": "the child is enrolled",
    "entry_aged_out": "the child has reached school age and has left the queue",
    "stoplist_refused": "the entry is {status}; it cannot go on the stop-list",
    # erasure at the family's request (domain/erasure.py): the legal reason to keep the data
    "erasure_in_queue": ("the child is in the queue: its data keeps its place and queue date; remove the "
                         "application from the queue first, then ask again"),
    "erasure_holds_referral": ("the child holds a referral: the place is held for it in a kindergarten's records "
                               "until the referral ends"),
    "erasure_enrolled": ("the child is enrolled: the kindergarten must keep its enrolment record while the child "
                         "attends and for the retention period after it leaves"),
    "erasure_within_retention": ("the record of a child who had a place is kept until {until} (the retention "
                                 "period of '{outcome}'); it is anonymised then without a request"),
    "erasure_not_closed": "the application has not closed; nothing can be erased yet",
    # places
    "count_out_of_range": "count must be a whole number from 1 to 10000",
    "cohort_not_preschool": "cohort {cohort} is not a birth year of preschool children",
    "withdraw_more_than_free": "only {free} free places to withdraw (held places cannot be withdrawn)",
    # referrals
    "referral_unknown": "no referral {referral_id!r}",
    "referral_not_of_entry": "no referral {referral_id!r} for application {application_id!r}",
    "referral_outcome_unknown": "unknown outcome {outcome!r}",
    "referral_ended": "referral {referral_id} is {status} ({outcome}); its place cannot be returned",
    "enrolment_referral_not_live": "referral {referral_id} is {status}; enrolment refused",
    # kindergartens and district offices
    "leave_not_enrolled": "only an enrolled child can leave a kindergarten (the entry is {status})",
    "child_not_enrolled_here": "no child {application_id!r} is enrolled in kindergarten {kindergarten!r}",
    "kindergarten_closed": "kindergarten {kindergarten!r} is closed",
    "kindergarten_not_empty": ("kindergarten {kindergarten!r} still has {held} held and {enrolled} taken places; "
                               "the referrals must end and the enrolled children leave before it closes"),
    "kindergarten_language_in_use": ("kindergarten {kindergarten!r} has places in {language!r} and keeps "
                                     "teaching in it"),
    "district_not_yours": "a district office manages the kindergartens of its own district only",
    "referral_not_here": "no referral {referral_id!r} to kindergarten {kindergarten!r}",
    "publication_unknown": "no scheduled publication {publication}",
    "publication_not_scheduled": "publication {publication} is no longer waiting ({status})",
    "month_format": "month must be YYYY-MM",
    # imports
    "import_not_live": "only live referrals are imported, not {state!r}",
    "import_nothing_to_confirm": ("only a referral whose privilege must be confirmed has a confirmation window to "
                                  "wait in or to have extended"),
    "import_deadline_not_after_issue": "deadline {deadline} is not after issued_at {issued_at}",
    "import_entry_not_waiting": "the entry is {status}; a referral cannot be imported for it",
    "import_place_of_other_group": ("the place {place} is not of the child's cohort and language "
                                    "({cohort}/{language})"),
    # policy
    "policy_reason_missing": "a policy change needs a reason",
    "policy_field_unknown": "policy.{name}: unknown policy field; known: {known}",
    "policy_category_bad": ("policy.categories: each category needs a code, a whole-number rank from 0 to "
                            "1000000 and needs_confirmation true or false"),
    "policy_category_codes_repeated": "policy.categories: category codes must be unique",
    "policy_category_code_bad": "policy.categories: bad category code {code!r}",
    "policy_general_missing": "policy.categories: the 'general' category is required",
    "policy_general_not_last": "policy.categories: no category may rank after 'general'",
    "policy_min_age_out_of_range": "policy.min_age_years: must be between 0 and 7",
    "policy_school_age_out_of_range": ("policy.school_age_years: must be a whole number of years above "
                                       "min_age_years ({min_age_years}) and at most 10"),
    "policy_days_out_of_range": "policy.{name}: must be a whole number of days between 0 and 366",
    "policy_country_unknown": "policy.country: must be KG or KZ",
    "category_in_use": "category {category!r} is still used by queue entries",
    # audit
    "run_unknown": "no allocation run {run_id}",
}


refusals.catalogue("queue", TEXTS)


class DomainError(ValueError):
    """A request the rules do not allow; the message says why."""


class Refused(DomainError):
    """A refusal: `code` (a key of TEXTS) with its `params`, the input at
    fault (`field`) and the English `message`. As HTTP: 409, the state does
    not allow it (Invalid: 422, NotFound: 404)."""

    status_code = 409

    def __init__(self, code: str, *, field: str | None = None, **params: Any):
        self.code = code
        self.field = field
        self.params = {k: v if isinstance(v, (int, str)) or v is None else str(v) for k, v in params.items()}
        self.message = TEXTS[code].format(**params)
        super().__init__(self.message)

    def as_error(self) -> dict[str, Any]:
        """One entry of an answer's `errors`."""
        return {"field": self.field or "", "code": self.code, "params": self.params, "message": self.message}


class Invalid(Refused):
    """The input breaks a rule by itself, whatever the state."""

    status_code = 422


class NotFound(Refused):
    status_code = 404


class NotAllowed(Refused):
    """The caller's scope does not reach it (a district office outside its district)."""

    status_code = 403


class UnknownCategory(Invalid, KeyError):
    def __init__(self, category: str, known: list[str], *, field: str | None = "category"):
        super().__init__("category_unknown", field=field, category=category, known=", ".join(known))

    def __str__(self) -> str:  # KeyError would print the repr of the args
        return self.message
