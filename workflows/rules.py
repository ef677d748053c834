"""The rules of a referral (DOMAIN.md section 4), in one place and pure.

The windows and their deadlines, the extension day and the extension,
certificate validity, the last day a parent sees, the stop-list, and which
act is allowed in which state (and why not). The ReferralWorkflow keeps the
timers, updates and activities and asks this module; the queue, verification,
notifications and the tests' fakes ask it too. Standard library only (the
working calendar is passed in), so it runs inside the workflow sandbox and in
unit tests alike.

```mermaid
stateDiagram-v2
    [*] --> awaiting_confirmation: issued, privilege to confirm
    [*] --> awaiting_enrolment: issued, general (or no check needed)
    awaiting_confirmation --> awaiting_enrolment: confirm (certificate in date)
    awaiting_confirmation --> awaiting_confirmation: confirm (certificate out of date: a fresh one is requested, the clock runs on)
    awaiting_confirmation --> awaiting_confirmation: extend (on the extension day, once, +extension_days)
    awaiting_enrolment --> enrolled: enrol
    awaiting_confirmation --> privilege_rejected: reject
    awaiting_enrolment --> privilege_rejected: reject (privilege found false; not for general)
    awaiting_confirmation --> cancelled: cancel
    awaiting_enrolment --> cancelled: cancel
    awaiting_confirmation --> paused: expire (window ends; stop-list)
    awaiting_enrolment --> paused: expire (window ends; stop-list)
    paused --> resumed: lift_stoplist (stoplist_days later)
    paused --> [*]: the child reached school age and left the queue (no stop-list)
    enrolled --> [*]
    cancelled --> [*]
    privilege_rejected --> [*]
    resumed --> [*]
```

Time: a window of N working days opened at a moment ends at 24:00 local
time of the Nth working day after that moment's day (kezek.calendar), held
as 00:00 of the next day; a parent reads it as "until <last day> inclusive"
(`last_day`). Moments given to these functions are aware datetimes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from kezek import refusals
from kezek.categories import GENERAL

if TYPE_CHECKING:  # passed in: this module needs only its methods
    from kezek.calendar import WorkingCalendar


# ------------------------------------------------------------------ states


class ReferralState(StrEnum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # the privilege must be confirmed at the Department
    AWAITING_ENROLMENT = "awaiting_enrolment"        # the documents must reach the kindergarten
    ENROLLED = "enrolled"
    CANCELLED = "cancelled"
    PRIVILEGE_REJECTED = "privilege_rejected"
    PAUSED = "paused"        # expired; the child is on the stop-list
    RESUMED = "resumed"      # the stop-list ended; the child is back in the queue


S = ReferralState
LIVE_STATES = frozenset({S.AWAITING_CONFIRMATION, S.AWAITING_ENROLMENT})
CLOSED_STATES = frozenset(S) - LIVE_STATES


class Act(StrEnum):
    """What moves a referral: a person's act (an update of the workflow,
    named as the update is) or the clock's."""

    CONFIRM = "confirm_privilege"    # a caseworker, with the certificate's issue date
    REJECT = "reject_privilege"      # a caseworker: not confirmed, or found false
    EXTEND = "extend"                # the parent, on the extension day
    CANCEL = "cancel"                # the parent, or the kindergarten for a family that declined
    ENROL = "enrol"                  # the kindergarten
    EXPIRE = "expire"                # the clock: the running window ended
    LIFT_STOPLIST = "lift_stoplist"  # the clock: the stop-list ended

    @property
    def what(self) -> str:
        """The act in a refusal's words: "cannot <what>: ..."."""
        return _WHAT[self]


_WHAT = {
    Act.CONFIRM: "confirm the privilege", Act.REJECT: "reject the privilege",
    Act.EXTEND: "extend the referral", Act.CANCEL: "cancel the referral", Act.ENROL: "enrol the child",
    Act.EXPIRE: "expire the referral", Act.LIFT_STOPLIST: "lift the stop-list",
}

# Which act is allowed in which state, and the state it leads to. An act not
# listed for a state is refused (see `refusal` for the reason given). Two
# acts may also leave the state as it is: EXTEND (it moves the deadline),
# and CONFIRM with a certificate out of date (a fresh one is requested).
TRANSITIONS: Mapping[tuple[ReferralState, Act], ReferralState] = {
    (S.AWAITING_CONFIRMATION, Act.CONFIRM): S.AWAITING_ENROLMENT,
    (S.AWAITING_CONFIRMATION, Act.EXTEND): S.AWAITING_CONFIRMATION,
    (S.AWAITING_CONFIRMATION, Act.REJECT): S.PRIVILEGE_REJECTED,
    (S.AWAITING_CONFIRMATION, Act.CANCEL): S.CANCELLED,
    (S.AWAITING_CONFIRMATION, Act.EXPIRE): S.PAUSED,
    (S.AWAITING_ENROLMENT, Act.ENROL): S.ENROLLED,
    (S.AWAITING_ENROLMENT, Act.REJECT): S.PRIVILEGE_REJECTED,
    (S.AWAITING_ENROLMENT, Act.CANCEL): S.CANCELLED,
    (S.AWAITING_ENROLMENT, Act.EXPIRE): S.PAUSED,
    (S.PAUSED, Act.LIFT_STOPLIST): S.RESUMED,
}


def after(state: ReferralState, act: Act) -> ReferralState:
    """The state `act` leads to from `state`; ValueError if the table has no
    such transition (ask `refusal` first for the reason a person is given)."""
    try:
        return TRANSITIONS[(S(state), act)]
    except KeyError:
        raise ValueError(f"no transition from {state} by {act}") from None


def first_state(needs_confirmation: bool) -> ReferralState:
    """The state a referral is issued in: a privilege that the system cannot
    check itself is confirmed by a caseworker first."""
    return S.AWAITING_CONFIRMATION if needs_confirmation else S.AWAITING_ENROLMENT


def window_of(state: ReferralState) -> str | None:
    """The window running in a state: "confirmation", "enrolment" or None."""
    return {S.AWAITING_CONFIRMATION: "confirmation", S.AWAITING_ENROLMENT: "enrolment"}.get(S(state))


# The state each fact about a referral leaves it in (the event type without
# its version). "referral.issued" depends on the referral (`first_state`);
# "referral.extended" leaves the state as it was (the confirmation window);
# "referral.imported" carries its own state.
STATE_AFTER_FACT: Mapping[str, ReferralState] = {
    "referral.privilege_confirmed": S.AWAITING_ENROLMENT,
    "referral.certificate_requested": S.AWAITING_CONFIRMATION,
    "referral.extended": S.AWAITING_CONFIRMATION,
    "referral.privilege_rejected": S.PRIVILEGE_REJECTED,
    "referral.cancelled": S.CANCELLED,
    "referral.expired": S.PAUSED,
    "referral.enrolled": S.ENROLLED,
}

# How a held place is given back (the queue's `return_place` outcome) and
# the state the referral ends in.
STATE_AFTER_RETURN: Mapping[str, ReferralState] = {
    "expired": S.PAUSED, "cancelled": S.CANCELLED, "privilege_rejected": S.PRIVILEGE_REJECTED,
}


def state_after_fact(event_type: str) -> ReferralState | None:
    """The state a fact ("referral.expired" or "referral.expired.v1") leaves
    the referral in; None for a fact that does not decide it alone."""
    name, _, version = event_type.rpartition(".")
    if not (version.startswith("v") and version[1:].isdigit()):
        name = event_type
    return STATE_AFTER_FACT.get(name)


# ---------------------------------------------------------------- windows


@dataclass(frozen=True)
class Windows:
    """The lengths DOMAIN.md section 4 gives; an administrator's policy may
    change each (the queue's Policy and the workflow's ReferralPolicy take
    their defaults from here)."""

    confirm_working_days: int = 5      # to confirm a privilege at the Department of Education
    enrol_working_days: int = 5        # to bring the documents to the kindergarten
    certificate_valid_days: int = 10   # a certificate issued on D is in date up to and including D+10
    extension_days: int = 30           # the one extension of a confirmation window, calendar days
    stoplist_days: int = 10            # no new referral after an expiry, calendar days
    reminder_working_days: int = 2     # the parent is reminded when this many working days are left
    # Not a window but the queue's other age bound (DOMAIN.md section 3): a
    # waiting child leaves the queue at 00:00 of the birthday on which it
    # reaches this age; a referral that ends without enrolment after that
    # birthday sends it out of the queue, not back into it.
    school_age_years: int = 7


DEFAULTS = Windows()


class WindowPolicy(Protocol):
    """What the deadline rules read of a policy (the queue's Policy, the
    workflow's ReferralPolicy and Windows all have these fields)."""

    confirm_working_days: int
    enrol_working_days: int
    certificate_valid_days: int
    extension_days: int
    stoplist_days: int


def first_deadline(cal: WorkingCalendar, issued_at: datetime, needs_confirmation: bool,
                   policy: WindowPolicy) -> datetime:
    """The end of the window a referral is issued with: the confirmation
    window, or for a general referral the enrolment window, each counted in
    working days from the moment of issue (local time, 00:00 of the day
    after its last day)."""
    days = policy.confirm_working_days if needs_confirmation else policy.enrol_working_days
    return cal.window_end(issued_at, days)


def enrolment_deadline(cal: WorkingCalendar, confirmed_at: datetime, policy: WindowPolicy) -> datetime:
    """After a caseworker confirms the privilege, the parent enrols within
    `enrol_working_days` counted from the confirmation."""
    return cal.window_end(confirmed_at, policy.enrol_working_days)


def extension_day(cal: WorkingCalendar, issued_at: datetime, policy: WindowPolicy) -> date:
    """The only day an extension may be asked for: the last (Nth) working
    day of the confirmation window opened at `issued_at`."""
    return cal.last_working_day(issued_at, policy.confirm_working_days)


def extension_day_before(cal: WorkingCalendar, deadline: datetime) -> date:
    """The extension day of a confirmation window known only by its end (a
    referral moved from a previous system): its last working day."""
    return cal.last_working_day_before(deadline)


def extended_deadline(deadline: datetime, policy: WindowPolicy) -> datetime:
    """The one extension moves the end by `extension_days` calendar days, to
    the same local time."""
    return deadline + timedelta(days=policy.extension_days)


def stoplist_end(expired_at: datetime, policy: WindowPolicy) -> datetime:
    """A missed deadline puts the child on the stop-list for `stoplist_days`
    calendar days from the moment the window ended, to the same local time."""
    return expired_at + timedelta(days=policy.stoplist_days)


def certificate_valid_until(issued_on: date, valid_days: int = DEFAULTS.certificate_valid_days) -> date:
    """A certificate issued on day D is in date up to and including D + valid_days."""
    return issued_on + timedelta(days=valid_days)


def certificate_in_date(issued_on: date, today: date, valid_days: int = DEFAULTS.certificate_valid_days) -> bool:
    return issued_on <= today <= certificate_valid_until(issued_on, valid_days)


def certificate_out_of_date(issued_on: date, today: date, valid_days: int) -> str | None:
    """Why a caseworker's confirmation today only requests a fresh
    certificate (None: the certificate is in date)."""
    valid_to = certificate_valid_until(issued_on, valid_days)
    if today <= valid_to:
        return None
    return (f"the certificate issued on {issued_on} was valid up to and "
            f"including {valid_to}; a fresh one is needed")


def last_day(deadline: datetime) -> date:
    """The last day a parent may act, as the parent reads it: a window that
    ends at 24:00 is held as 00:00 of the next day, but it runs "until 11
    March inclusive". `deadline` in the reader's local time."""
    return (deadline - timedelta(microseconds=1)).date()


def days_left(deadline: datetime, today: date) -> int:
    """Calendar days left after today (0: today is the last day; negative:
    the window has ended)."""
    return (last_day(deadline) - today).days


def working_days_left(cal: WorkingCalendar, deadline: datetime, today: date) -> int:
    """Working days after today up to the last day (today, even when it is
    the last day, not counted)."""
    last = last_day(cal.local(deadline))
    if last <= today:
        return 0
    return cal.working_days_between(today + timedelta(days=1), last)


REMINDER_TIME = timedelta(hours=9)   # in the morning, local time


def reminder_at(cal: WorkingCalendar, deadline: datetime, working_days_left_: int) -> datetime | None:
    """09:00 local time on the morning when `working_days_left_` working
    days of the window ending at `deadline` are left (its last working day
    counting as one); None when no reminder is wanted (0)."""
    if not working_days_left_:
        return None
    day = cal.last_working_day_before(deadline)
    if working_days_left_ > 1:
        day = cal.nth_working_day_before(day, working_days_left_ - 1)
    return cal.start_of_day(day) + REMINDER_TIME


# --------------------------------------------------------------- refusals


@dataclass(frozen=True)
class Standing:
    """Where a referral stands: what the rules of an act look at."""

    state: ReferralState
    category: str
    needs_confirmation: bool
    issued_at: datetime                 # local time
    deadline: datetime | None = None    # end of the running window, local time
    extended: bool = False
    extension_day: date | None = None   # of the confirmation window, if it can still be extended
    closed_at: datetime | None = None
    stoplist_until: datetime | None = None


def fmt_moment(moment: datetime | None) -> str:
    """A local moment as refusals and messages write it."""
    return moment.replace(tzinfo=None).isoformat(timespec="seconds") if moment else "-"


# The English text of every refusal, by code (kezek.refusals): what API
# clients and logs read. Pages say the code in the reader's language.
TEXTS: dict[str, str] = {
    "referral_enrolled": "the child is already enrolled",
    "referral_cancelled": "the referral was cancelled",
    "referral_privilege_rejected": "the privilege was rejected and the referral closed",
    "referral_stoplisted": "the referral expired at {closed_at}; the child is on the stop-list until {stoplist_until}",
    "referral_expired": "the referral expired at {closed_at}",
    "referral_closed": "cannot {what}: {reason}",
    "acted_before_issue": "acted_at {at} is before the referral was issued",
    "acted_at_in_future": "acted_at {at} is in the future",
    "acted_at_too_old": "acted_at {at} is too far in the past",
    "window_ended": "cannot {what}: the window ended at {deadline}",
    "certificate_date_in_future": "the certificate's issue date {issued} is in the future",
    "general_has_no_privilege": "category {category!r} has no privilege to reject",
    "no_confirmation_window": "category {category!r} has no confirmation window",
    "already_confirmed": "the privilege is already confirmed",
    "extend_no_confirmation_window": ("only the confirmation window can be extended, and "
                                      "category {category!r} has no confirmation window"),
    "extend_already_confirmed": "only the confirmation window can be extended, and the privilege is already confirmed",
    "already_extended": "the referral has already been extended once",
    "not_extension_day": ("an extension may be asked for only on the last working day of the "
                          "confirmation window, {extension_day}, not on {day}"),
    "enrol_before_confirmation": ("enrolment before the privilege is confirmed is refused: the privilege "
                                  "must first be confirmed at the Department of Education"),
    "not_a_persons_act": "{what} is the clock's, not a person's act",
}


refusals.catalogue("referral", TEXTS)


class Refusal(str):
    """Why an act is refused: the English words (it is a str, as the
    workflow and API clients have always given it), with a stable `code`
    (a key of TEXTS) and the `params` of its message, so that pages say it
    in the reader's language."""

    code: str
    params: dict[str, str]

    def __new__(cls, code: str, **params: object) -> "Refusal":
        values = {k: str(v) for k, v in params.items()}
        self = super().__new__(cls, TEXTS[code].format(**values))
        self.code, self.params = code, values
        return self


_CLOSED = {S.ENROLLED: "referral_enrolled", S.CANCELLED: "referral_cancelled",
           S.PRIVILEGE_REJECTED: "referral_privilege_rejected", S.PAUSED: "referral_stoplisted"}


def closed_reason(state: ReferralState, closed_at: datetime | None,
                  stoplist_until: datetime | None = None) -> Refusal:
    """Why nothing can be done any more with a referral in `state`. An
    expired referral whose child went on no stop-list (it had reached school
    age and left the queue) simply expired."""
    code = _CLOSED.get(state, "referral_expired")
    if state == S.PAUSED and stoplist_until is None:
        code = "referral_expired"
    return Refusal(code, closed_at=fmt_moment(closed_at), stoplist_until=fmt_moment(stoplist_until))


def closed_refusal(act: Act, r: Standing) -> Refusal | None:
    """Every act is refused once the referral has closed."""
    if r.state in LIVE_STATES:
        return None
    reason = closed_reason(r.state, r.closed_at, r.stoplist_until)
    return Refusal("referral_closed", act=act.value, what=act.what, reason=reason, state=r.state.value,
                   closed_at=fmt_moment(r.closed_at), stoplist_until=fmt_moment(r.stoplist_until))


def refusal(act: Act, r: Standing, at: datetime, certificate_issued: date | None = None) -> Refusal | None:
    """Why a person's `act` at the local moment `at` is refused, in the
    words the person is shown; None when the rules allow it. A certificate
    out of date is not a refusal (see `certificate_out_of_date`)."""
    why = closed_refusal(act, r)
    if why:
        return why
    if at < r.issued_at:
        return Refusal("acted_before_issue", at=fmt_moment(at))
    if r.deadline is not None and at >= r.deadline:
        return Refusal("window_ended", act=act.value, what=act.what, deadline=fmt_moment(r.deadline))
    if act is Act.CONFIRM:
        if r.state is not S.AWAITING_CONFIRMATION:
            return _no_confirmation_window(r)
        if certificate_issued is not None and certificate_issued > at.date():
            return Refusal("certificate_date_in_future", issued=certificate_issued)
    elif act is Act.REJECT:
        # Not confirmed in the confirmation window, or found false later (a
        # confirmed privilege, or a category the system checks itself): the
        # referral it obtained is given up and the child joins the general queue.
        if r.category == GENERAL:
            return Refusal("general_has_no_privilege", category=GENERAL)
    elif act is Act.EXTEND:
        if r.state is not S.AWAITING_CONFIRMATION:
            return _no_confirmation_window(r, extending=True)
        if r.extended:
            return Refusal("already_extended")
        if at.date() != r.extension_day:
            return Refusal("not_extension_day", extension_day=r.extension_day, day=at.date())
    elif act is Act.ENROL:
        if r.state is S.AWAITING_CONFIRMATION:
            return Refusal("enrol_before_confirmation")
    elif act is not Act.CANCEL:
        return Refusal("not_a_persons_act", act=act.value, what=act.what)
    return None


def _no_confirmation_window(r: Standing, *, extending: bool = False) -> Refusal:
    prefix = "extend_" if extending else ""
    if not r.needs_confirmation:
        return Refusal(f"{prefix}no_confirmation_window", category=r.category)
    return Refusal(f"{prefix}already_confirmed")

