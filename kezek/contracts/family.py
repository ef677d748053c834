"""The family's own copy (DOMAIN.md section 7), as pydantic models: the part
each service answers over its internal route (registration's account,
the queue's entry, verification's cases, the notifications' messages) and
the whole that the gateway assembles for the parent (GET /api/v1/me/data).
One definition, so the copy a family downloads is documented where each
part is made.

Answers allow properties added later (a service that keeps something new
about the family adds it to its copy first); the routes pass them on with
`response_model_exclude_unset=True`, so a copy keeps the shape it had.
Open records (an allocation's inputs, an act's details, the address as
it was filed) stay objects: their keys are the service's own.
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from kezek.contracts.registration import DraftChild
from kezek.openapi import Answer, Moment, example


class Act(Answer):
    """One act on the family's data, from a service's audit trail."""
    at: Moment | None = None
    action: str
    subject: str | None = None
    by: str | None = Field(None, description="the parent, a service, or `staff (<role>)`: never a staff member's name")
    outcome: str | None = None
    details: dict[str, Any] | None = None


# ------------------------------------------------------------------ registration

class AccountCopy(Answer):
    id: str
    email: str | None = None
    pin: str | None = None
    surname: str | None = None
    name: str | None = None
    patronymic: str | None = None
    phone: str | None = None
    locale: str | None = None
    tunduk_linked: bool | None = None
    created_at: Moment | None = None
    activated_at: Moment | None = None


class ApplicationAsFiled(Answer):
    id: str
    country: str | None = None
    status: str | None = None
    submitted_at: Moment | None = None
    child: DraftChild | None = None
    parent: dict[str, Any] | None = Field(None, description="the parent's step as filed (names, PIN, document)")
    address: dict[str, Any] | None = Field(None, description="the address as filed and resolved")
    phone: str | None = None
    email: str | None = None
    category: str | None = None
    language: str | None = None
    preferences: list[str] | None = None
    anonymised_at: Moment | None = None


_ACCOUNT = {"id": "acc-9c1e", "email": "aigul@example.kg", "pin": "11203199000123", "surname": "Асанова",
            "name": "Айгүл", "patronymic": None, "phone": "+996555123456", "locale": "ky", "tunduk_linked": False,
            "created_at": "2026-11-20T10:15:00+06:00", "activated_at": "2026-11-20T10:21:00+06:00"}
_FILED = {"id": "app-1f3a", "country": "KG", "status": "submitted", "submitted_at": "2026-11-20T10:15:00+06:00",
          "child": {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек", "patronymic": None,
                    "birth_date": "2024-06-15", "sex": "male"},
          "parent": {"role": "mother", "surname": "Асанова", "name": "Айгүл", "pin": "11203199000123",
                     "document_type": "id_card", "document_number": "ID1234567"},
          "address": {"region": "41711000000000", "street": "Чүй проспекти", "house": "120"},
          "phone": "+996555123456", "email": "aigul@example.kg", "category": "general", "language": "ky",
          "preferences": ["bsk-12"], "anonymised_at": None}
_ACT = {"at": "2026-11-20T10:15:00+06:00", "action": "application.submitted", "subject": "application:app-1f3a",
        "by": "parent:acc-9c1e", "outcome": "ok"}


class RegistrationCopy(Answer):
    """Everything registration holds about the parent's own account."""
    model_config = example(account=_ACCOUNT, applications=[_FILED], history=[_ACT])
    account: AccountCopy
    applications: list[ApplicationAsFiled]
    history: list[Act]


# ------------------------------------------------------------------ the queue

class QueueEntryCopy(Answer):
    id: str
    pin: str | None = None
    surname: str | None = None
    name: str | None = None
    patronymic: str | None = None
    birth_date: str | None = None
    cohort: int | str | None = None
    category: str | None = None
    claimed_category: str | None = None
    queue_date: str | None = None
    language: str | None = None
    preferences: list[str] | None = None
    locale: str | None = None
    status: str | None = None
    paused_until: str | None = None
    created_at: Moment | None = None
    removed_at: Moment | None = None
    removal_reason: str | None = None
    left_at: Moment | None = None


class ReferralCopy(Answer):
    id: int | str
    kindergarten_id: str | None = None
    cohort: int | str | None = None
    language: str | None = None
    category: str | None = None
    needs_confirmation: bool | None = None
    status: str | None = None
    state: str | None = None
    outcome: str | None = None
    issued_at: Moment | None = None
    deadline: str | None = None
    ended_at: Moment | None = None
    extended: bool | int | None = None
    confirmed_at: Moment | None = None


class PublishedPosition(Answer):
    kindergarten_id: str | None = None
    position: int | None = None
    at: Moment | None = None


class AllocationRecord(Answer):
    """What an allocation run decided for the child, with the inputs it decided on."""
    run_id: int | str
    referral_id: int | str | None = None
    kindergarten: str | None = None
    cohort: int | str | None = None
    language: str | None = None
    for_category: str | None = None
    preference_index: int | None = None
    inputs: dict[str, Any] | list[Any] | None = None


class PositionCopy(Answer):
    kindergarten: str
    position: int | None = None
    explanation: str | None = Field(None, description="why the child stands where it does")


class RetentionCopy(Answer):
    outcome: str | None = None
    closed_at: Moment | None = None
    kept_until: Moment | None = None
    anonymised_at: Moment | None = None
    erasure_requested_at: Moment | None = None


class QueueCopy(Answer):
    """Everything the queue holds about one application of the family."""
    model_config = example(
        entry={"id": "app-1f3a", "pin": "21506202400011", "surname": "Асанов", "name": "Айбек", "cohort": 2024,
               "category": "general", "queue_date": "2026-11-20", "language": "ky", "preferences": ["bsk-12"],
               "status": "queued", "created_at": "2026-11-20T10:15:02+06:00"},
        referrals=[], published_position={"kindergarten_id": "bsk-12", "position": 41,
                                          "at": "2026-12-01T00:00:00+06:00"},
        allocations=[], history=[{**_ACT, "action": "entry.registered", "by": "service:registration"}],
        retention=None, positions=[{"kindergarten": "bsk-12", "position": 41,
                                    "explanation": "general queue, applied on 2026-11-20"}])
    entry: QueueEntryCopy | None = None
    referrals: list[ReferralCopy] = Field(default_factory=list)
    published_position: PublishedPosition | None = None
    allocations: list[AllocationRecord] = Field(default_factory=list)
    history: list[Act] = Field(default_factory=list)
    retention: RetentionCopy | None = None
    positions: list[PositionCopy] = Field(default_factory=list)


# ------------------------------------------------------------------ verification

class ApplicantCopy(Answer):
    application_id: str
    child_pin: str | None = None
    child_surname: str | None = None
    child_name: str | None = None
    child_patronymic: str | None = None
    child_birth_date: str | None = None
    parent_phone: str | None = None
    parent_email: str | None = None
    district: str | None = None
    category: str | None = None
    submitted_category: str | None = None
    status: str | None = None


class CaseReferral(Answer):
    referral_id: str
    application_id: str
    kindergarten: str | None = None
    state: str | None = None
    issued_at: Moment | None = None
    deadline: str | None = None
    closed_at: Moment | None = None
    certificate_requests: int | None = None


class CertificateCopy(Answer):
    referral_id: str
    organisation: str | None = None
    number: str | None = None
    issued_on: str | None = None
    scan_name: str | None = None
    scan_bytes: int | None = None
    scan_type: str | None = None
    recorded_at: Moment | None = None


class DecisionCopy(Answer):
    referral_id: str
    action: str | None = None
    outcome: str | None = None
    reason: str | None = None
    refusal: str | None = None
    at: Moment | None = None


class VoucherCopy(Answer):
    application_id: str
    decision: str | None = None
    benefit_type: str | None = None
    reason: str | None = None
    decided_at: Moment | None = None


class VerificationCopy(Answer):
    """What the caseworkers' service holds about the parent's applications."""
    model_config = example(
        applicants=[{"application_id": "app-1f3a", "child_pin": "21506202400011", "child_surname": "Асанов",
                     "child_name": "Айбек", "district": "41711000000000", "category": "general",
                     "status": "queued"}],
        referrals=[], certificates=[], decisions=[], vouchers=[], history=[])
    applicants: list[ApplicantCopy] = Field(default_factory=list)
    referrals: list[CaseReferral] = Field(default_factory=list)
    certificates: list[CertificateCopy] = Field(default_factory=list)
    decisions: list[DecisionCopy] = Field(default_factory=list)
    vouchers: list[VoucherCopy] = Field(default_factory=list)
    history: list[Act] = Field(default_factory=list)


# ------------------------------------------------------------------ notifications

class Contacts(Answer):
    email: str | None = None
    phone: str | None = None
    locale: str | None = None


class MessageCopy(Answer):
    id: str
    kind: str | None = None
    channel: str | None = None
    address: str | None = None
    application_id: str | None = None
    referral_id: str | None = None
    locale: str | None = None
    subject: str | None = None
    text: str | None = Field(None, description="as sent; codes and links are removed once sent")
    status: str | None = None
    created_at: Moment | None = None
    sent_at: Moment | None = None
    delivered_at: Moment | None = None
    failed_at: Moment | None = None
    read_at: Moment | None = None


class NotificationsCopy(Answer):
    """The contacts the notifications service writes to, and every message about the family."""
    model_config = example(
        contacts={"email": "aigul@example.kg", "phone": "+996555123456", "locale": "ky"},
        messages=[{"id": "msg-77", "kind": "application_received", "channel": "email",
                   "address": "aigul@example.kg", "application_id": "app-1f3a", "locale": "ky",
                   "subject": "Арыз кабыл алынды", "text": "...", "status": "sent",
                   "created_at": "2026-11-20T10:15:03+06:00", "sent_at": "2026-11-20T10:15:04+06:00"}])
    contacts: Contacts | None = None
    messages: list[MessageCopy] = Field(default_factory=list)


# ------------------------------------------------------------------ the whole, as the gateway gives it

class PositionPoint(Answer):
    at: Moment
    kindergarten_id: str | None = None
    position: int | None = None


class VoucherDecisionSeen(Answer):
    decision: str | None = None
    decision_number: str | None = None
    benefit_type: str | None = None
    reason: str | None = None
    decided_at: Moment | None = None


class PortalPart(Answer):
    position_history: list[PositionPoint] = Field(default_factory=list)
    voucher_decision: VoucherDecisionSeen | None = None


class VerificationPart(Answer):
    applicant: ApplicantCopy | None = None
    referrals: list[CaseReferral] = Field(default_factory=list)
    certificates: list[CertificateCopy] = Field(default_factory=list)
    vouchers: list[VoucherCopy] = Field(default_factory=list)


class ApplicationCopy(Answer):
    id: str
    registration: ApplicationAsFiled
    queue: QueueCopy | None = None
    verification: VerificationPart
    portal: PortalPart


class HistoryCopy(Answer):
    registration: list[Act] = Field(default_factory=list)
    verification: list[Act] = Field(default_factory=list)
    queue: dict[str, list[Act]] = Field(default_factory=dict, description="by application id")


class FamilyCopy(Answer):
    """Everything Kezek holds about the signed-in parent's family (format kezek.family-copy.v1)."""
    model_config = example(
        format="kezek.family-copy.v1", generated_at="2026-12-05T11:00:00+00:00", parent=_ACCOUNT,
        applications=[{"id": "app-1f3a", "registration": _FILED, "queue": None,
                       "verification": {"applicant": None, "referrals": [], "certificates": [], "vouchers": []},
                       "portal": {"position_history": [], "voucher_decision": None}}],
        notifications={"contacts": None, "messages": []}, decisions=[],
        history={"registration": [_ACT], "verification": [], "queue": {"app-1f3a": []}})
    format: str
    generated_at: Moment
    parent: AccountCopy
    applications: list[ApplicationCopy]
    notifications: NotificationsCopy
    decisions: list[DecisionCopy] = Field(default_factory=list)
    history: HistoryCopy


class Erasure(BaseModel):
    """The family's request to erase a closed application, granted."""
    model_config = example(application_id="app-1f3a", erased=True, anonymised_at="2026-12-05T11:00:00+00:00")
    application_id: str
    erased: bool = Field(description="true: every service anonymises its data of the application (now, or already did)")
    anonymised_at: Moment | None = None


class FamilyLook(Answer):
    """A member of staff's look at the family's data, as the family is told
    of it (DOMAIN.md section 7): when, the role and the office, what; never who."""
    model_config = example(at="2026-12-05T11:00:00+00:00", role="caseworker", office="41711210000000",
                           what="case.view", application_id="app-1f3a", service="verification")
    at: Moment
    role: str
    office: str = Field("", description="the kindergarten or district the member of staff works for")
    what: str = Field(description="the kind of look, e.g. case.view, scan.view, application.viewed")
    application_id: str | None = None
    service: str = Field("", description="the service that recorded the look: queue or verification")
