"""What the ReferralWorkflow exchanges with the rest of Kezek.

- `ReferralInput`: what the queue service passes when it issues a referral.
- Updates (parents, caseworkers, kindergartens act through them) and their
  result; the query result `ReferralStatus`.
- Activity contracts: the names and payloads of the activities that the
  services implement (queue: the register of places and the queue;
  notifications: messages to the parent). Tests and the scenario runner
  register fakes under the same names.

Every activity payload carries `idempotency_key` ("<workflow id>:<step>"):
activities run at least once, so the implementation must do its effect once
per key (the queue service keeps the keys it has applied in the same
transaction as the effect). `at` is the business moment of the change (the
deadline for an expiry, the moment of the act for an update), which is what
the audit log and the published facts carry.

The queue service is the system of record for referrals: each queue-side
activity writes the corresponding `referral.*` / `application.*` / `place.*`
fact to its outbox in the same transaction as the change. Notifications get
commands (`notify_parent`), not facts, from the workflow.
"""
from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# The states and why a closed referral refuses everything are rules
# (workflows/rules.py); named here too for callers of the contracts.
from workflows.rules import DEFAULTS, LIVE_STATES, ReferralState, closed_reason  # noqa: F401

TASK_QUEUE = "referrals"

# ---------------------------------------------------------------- activities
# Queue service (services/queue/activities.py).
RETURN_PLACE = "queue.return_place"
RETURN_TO_GENERAL_QUEUE = "queue.return_to_general_queue"
PUT_ON_STOPLIST = "queue.put_on_stoplist"
LIFT_STOPLIST = "queue.lift_stoplist"
RECORD_ENROLMENT = "queue.record_enrolment"
RECORD_REFERRAL = "queue.record_referral"
# Notifications service (services/notifications/activities.py).
NOTIFY_PARENT = "notifications.notify_parent"

QUEUE_ACTIVITIES = (RETURN_PLACE, RETURN_TO_GENERAL_QUEUE, PUT_ON_STOPLIST, LIFT_STOPLIST,
                    RECORD_ENROLMENT, RECORD_REFERRAL)
NOTIFICATION_ACTIVITIES = (NOTIFY_PARENT,)

# Business refusals (non-retryable ApplicationError types).
REFUSED = "ReferralRefused"        # an update the rules do not allow (the API answers 409)
QUEUE_REFUSED = "QueueRefused"     # the queue service refuses an activity for good


def workflow_id(referral_id: str) -> str:
    """One workflow per referral, derived from the business key: a redelivered
    command cannot start a second one."""
    return f"referral-{referral_id}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReferralPolicy(_Model):
    """Window lengths, from the queue's policy (defaults: rules.DEFAULTS)."""

    confirm_working_days: int = Field(DEFAULTS.confirm_working_days, ge=0, le=366)
    enrol_working_days: int = Field(DEFAULTS.enrol_working_days, ge=0, le=366)
    certificate_valid_days: int = Field(DEFAULTS.certificate_valid_days, ge=0, le=366)
    extension_days: int = Field(DEFAULTS.extension_days, ge=0, le=366)
    stoplist_days: int = Field(DEFAULTS.stoplist_days, ge=0, le=366)
    # The parent is reminded on the morning when this many working days of a
    # window are left (0: no reminder).
    reminder_working_days: int = Field(DEFAULTS.reminder_working_days, ge=0, le=30)


class ResumedReferral(_Model):
    """Where a live referral moved from a previous system stands (the
    Balalyk migration). Its workflow continues from here: in this state,
    with exactly this deadline (what is left of the window, not a fresh
    one), and with the one extension gone if it was used."""

    state: Literal["awaiting_confirmation", "awaiting_enrolment"]
    deadline: AwareDatetime                 # the end of the running window, as the old portal recorded it
    extended: bool = False                  # the confirmation window was already extended once
    confirmed_at: AwareDatetime | None = None   # when the privilege was confirmed, if it was


class ReferralInput(_Model):
    referral_id: str = Field(min_length=1, max_length=100)
    application_id: str = Field(min_length=1, max_length=100)   # the child's queue entry
    kindergarten: str = Field(min_length=1, max_length=100)
    cohort: int                                                # birth year
    language: str = Field(min_length=1, max_length=10)
    category: str = Field(min_length=1, max_length=50)
    for_category: str | None = None     # the reserved pool the place came from (it goes back there)
    needs_confirmation: bool            # a caseworker must confirm the privilege first
    issued_at: AwareDatetime            # the allocation moment; the first window counts from it
    country: Literal["KG", "KZ"] = "KG"
    policy: ReferralPolicy = ReferralPolicy()
    parent_id: str | None = None
    # Business time = workflow.now() + clock_offset. Zero in production; the
    # scenario runner simulates a calendar on a time-skipping server that
    # starts at today's date, so it maps server time onto scenario time.
    clock_offset: timedelta = timedelta(0)
    # Set for a referral imported from a previous system; None for one the
    # allocation issued (then the first window counts from `issued_at`).
    resume: ResumedReferral | None = None
    # The queue's allocation already wrote the referral.issued fact (and its
    # audit row) in the transaction that issued the referral, so the parent
    # was told from it: the workflow records no "issued" step. False in
    # inputs written before (their workflows record it, as they always did).
    announced: bool = False

    @model_validator(mode="after")
    def _resume_fits(self) -> "ReferralInput":
        r = self.resume
        if r is not None and not self.needs_confirmation:
            if r.state == "awaiting_confirmation":
                raise ValueError("resume.state: awaiting_confirmation needs needs_confirmation")
            if r.extended:
                raise ValueError("resume.extended: only a confirmation window can have been extended")
        if r is not None and self.announced:
            raise ValueError("announced: an imported referral was announced by the previous system")
        if r is not None and r.deadline <= self.issued_at:
            raise ValueError("resume.deadline: must be after issued_at")
        return self


# ------------------------------------------------------------------ updates


class Act(_Model):
    """Who acted and when. `acted_at` is the moment the receiving service got
    the request (a parent pressing "extend" at 23:59:58 on the last day is in
    time even if the workflow sees it a second later); the workflow accepts it
    only close to its own clock. Omitted: the workflow's clock."""

    acted_at: AwareDatetime | None = None
    actor: str = ""        # "parent:<id>", "caseworker:<id>", "kindergarten:<id>", "system"


class ConfirmPrivilege(Act):
    certificate_issued: date     # the issue date printed on the certificate from the place of work


class RejectPrivilege(Act):
    """The privilege is not confirmed (confirmation window) or found false
    (at any live point): the child returns to the general queue."""

    reason: str = Field("", max_length=500)


class ExtendReferral(Act):
    pass


class CancelReferral(Act):
    drop_preference: bool = True   # "Cancel direction": that kindergarten leaves the preferences
    reason: str = Field("", max_length=500)


class RecordEnrolment(Act):
    pass


class ActResult(_Model):
    """What an accepted update did."""

    event: str                    # the fact it produced: "referral.privilege_confirmed", ...
    state: ReferralState
    deadline: AwareDatetime | None = None   # the end of the window now running, local time
    reason: str | None = None


class ReferralStatus(_Model):
    """The query result: what the cabinet and the caseworker UI show."""

    referral_id: str
    application_id: str
    kindergarten: str
    state: ReferralState
    window: Literal["confirmation", "enrolment"] | None
    deadline: AwareDatetime | None           # end of the running window (local time)
    issued_at: AwareDatetime
    confirmation_deadline: AwareDatetime | None = None
    enrolment_deadline: AwareDatetime | None = None
    extension_day: date | None = None        # the only day an extension may be asked for
    extended: bool = False
    confirmed_at: AwareDatetime | None = None
    certificate_requests: int = 0
    stoplist_until: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None


class ReferralOutcome(_Model):
    referral_id: str
    state: ReferralState
    closed_at: AwareDatetime
    stoplist_until: AwareDatetime | None = None


# --------------------------------------------------------- activity payloads


class ActivityCall(_Model):
    idempotency_key: str     # "<workflow id>:<step>"; apply the effect once per key
    referral_id: str
    application_id: str
    at: AwareDatetime        # the business moment of the change
    actor: str = "system"


class PlaceRef(_Model):
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None = None


class ReturnPlace(ActivityCall):
    """The held place goes back to the register of free places. In the same
    transaction the queue settles the child so that the place cannot go
    straight back to it: "expired" pauses it (PutOnStoplist follows with the
    exact end), "privilege_rejected" moves it to the general queue
    (ReturnToGeneralQueue follows), "cancelled" requeues it."""

    place: PlaceRef
    outcome: Literal["expired", "cancelled", "privilege_rejected"]
    drop_preference: bool = False   # cancelled by the parent: that kindergarten leaves the preferences
    reason: str | None = None


class PlaceReturned(_Model):
    """What the queue answers ReturnPlace with. `aged_out`: the child had
    reached school age when the referral ended, so it left the queue
    instead of going back to it or on the stop-list (DOMAIN.md section 3);
    the workflow then puts it on no stop-list. (Workflows that started
    before AGED_OUT_PATCH ignore the answer.)"""

    applied: bool            # False: this key's effect was applied before
    aged_out: bool = False


class ReturnToGeneralQueue(ActivityCall):
    """The privilege is gone: the child is ranked in the general queue by its
    original queue date."""

    from_category: str
    reason: str | None = None


class PutOnStoplist(ActivityCall):
    until: AwareDatetime     # no new referral before this moment


class LiftStoplist(ActivityCall):
    pass


class RecordEnrolmentCall(ActivityCall):
    place: PlaceRef


class RecordReferral(ActivityCall):
    """A change of the referral that leaves the register untouched (issued,
    privilege confirmed, certificate requested, extended): the queue service
    keeps the referral's state and deadline for the cabinet and publishes the
    fact."""

    event: Literal["referral.issued", "referral.privilege_confirmed",
                   "referral.certificate_requested", "referral.extended"]
    state: ReferralState
    place: PlaceRef
    deadline: AwareDatetime | None = None
    needs_confirmation: bool | None = None
    reason: str | None = None


NOTIFICATION_KINDS = (
    "referral.issued.v1", "referral.deadline_approaching.v1", "referral.privilege_confirmed.v1",
    "referral.certificate_requested.v1", "referral.extended.v1", "referral.privilege_rejected.v1",
    "referral.expired.v1", "application.resumed.v1",
)
# The kinds the notifications service tells the parent from NotifyParent
# itself: they happen only in the workflow (a timer) and travel as no Kafka
# fact. Every other kind is told from the queue's fact of the same name, and
# the workflow (since LEAN_PATCH) does not ask for it.
ACTIVITY_NOTIFICATION_KINDS = frozenset({"referral.deadline_approaching.v1"})


class NotifyParent(ActivityCall):
    """A message to the parent about an event: `kind` is one of
    NOTIFICATION_KINDS (the event type that names the template, as in the
    notifications service's rules); `data` fills it in (referral_id,
    kindergarten_id, deadline, stoplist_until, reason, working_days_left...)."""

    kind: str
    parent_id: str | None = None
    data: dict[str, str | int | bool | None] = {}



# Update and query names, for callers that do not import the workflow class.
WORKFLOW_TYPE = "ReferralWorkflow"
CONFIRM_PRIVILEGE = "confirm_privilege"
REJECT_PRIVILEGE = "reject_privilege"
EXTEND = "extend"
CANCEL = "cancel"
ENROL = "enrol"
STATUS = "status"
