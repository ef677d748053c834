"""What the parents' JSON API answers beyond registration's contract
(kezek/contracts/registration.py): the cabinet as the gateway puts it
together (each child with its queue entry, positions, referrals and
voucher), the inbox, the kindergartens nearby. Answers allow properties
added later; the routes keep each answer's shape (exclude_unset)."""
from __future__ import annotations

from typing import Literal

from fastapi.security import HTTPBearer
from pydantic import Field

from kezek.contracts.registration import Account, ApplicationRecord
from kezek.openapi import Answer, Moment, example

# "Authorize" in the JSON API's documents: the parent's own session.
PARENT_SESSION = HTTPBearer(
    auto_error=False, scheme_name="ParentSession", bearerFormat="session token",
    description="The parent's session: the `token` that POST /api/v1/sessions answers (12 hours; "
                "DELETE /api/v1/sessions/current ends it). Send it as `Authorization: Bearer <token>`.")


class Ahead(Answer):
    higher_category: int | None = Field(None, description="children ahead because their category ranks first")
    earlier_queue_date: int | None = Field(None, description="same category, earlier in the queue")


class PositionView(Answer):
    kindergarten_id: str
    kindergarten_name: str | None = None
    position: int | None = None
    ahead: Ahead | None = None
    explanation: str | None = None


class HistoryPoint(Answer):
    at: Moment
    position: int


class QueueView(Answer):
    status: str | None = Field(None, description="queued | referred | enrolled | paused | removed | left | aged_out")
    category: str | None = None
    queue_date: Moment | None = None
    paused_until: Moment | None = None
    left_at: Moment | None = None
    cohort: int | None = None
    language: str | None = None
    history: list[HistoryPoint] = Field(default_factory=list, description="the child's position over time")
    positions: list[PositionView] = Field(default_factory=list)


class ReferralView(Answer):
    referral_id: str
    kindergarten_id: str | None = None
    kindergarten_name: str | None = None
    status: str | None = Field(None, description="the referral's state: awaiting_confirmation, ...")
    stage: str | None = Field(None, description="confirmation | enrolment")
    issued_at: Moment | None = None
    deadline: Moment | None = Field(None, description="00:00 local time of the day after the last day")
    actions: list[str] = Field(default_factory=list, description="what the parent may do now: cancel, extend")


class VoucherView(Answer):
    status: str = Field(description="pending, or the commission's decision")


class CabinetApplication(ApplicationRecord):
    queue: QueueView | None = None
    referrals: list[ReferralView] = Field(default_factory=list)
    queue_error: Literal["unavailable", "refused"] | None = None
    voucher: VoucherView | None = None


class Cabinet(Answer):
    """The parent's account and children, each with its place in the queue."""
    model_config = example(
        account={"id": "acc-9c1e", "email": "aigul@example.kg", "surname": "Асанова", "name": "Айгүл",
                 "phone": "+996555123456", "locale": "ky", "tunduk_linked": False},
        applications=[{
            "id": "app-1f3a", "child": {"pin": "21506202400011", "surname": "Асанов", "name": "Айбек",
                                         "birth_date": "2024-06-15", "sex": "male"},
            "category": "general", "language": "ky", "preferences": ["bsk-12"], "status": "submitted",
            "submitted_at": "2026-11-20T10:15:00+06:00",
            "queue": {"status": "referred", "category": "general", "queue_date": "2026-11-20T10:15:00+06:00",
                      "cohort": 2024, "language": "ky", "history": [{"at": "2027-02-01T00:00:00Z", "position": 3}],
                      "positions": [{"kindergarten_id": "bsk-12", "kindergarten_name": "Ак-Бата", "position": 1,
                                     "ahead": {"higher_category": 0, "earlier_queue_date": 0}}]},
            "referrals": [{"referral_id": "7", "kindergarten_id": "bsk-12", "kindergarten_name": "Ак-Бата",
                           "status": "awaiting_enrolment", "stage": "enrolment",
                           "issued_at": "2027-03-01T09:00:05+06:00", "deadline": "2027-03-11T00:00:00+06:00",
                           "actions": ["cancel"]}],
            "queue_error": None, "voucher": None}])
    account: Account
    applications: list[CabinetApplication]


class InboxMessage(Answer):
    model_config = example(id="5b0e2c1a-7d7e-4c55-9a43-2f1c3b9d4e02", kind="referral_issued", title="Жолдомо",
                           text="Айбек «Ак-Бата» бала бакчасына жолдомо алды.",
                           created_at="2027-03-01T09:00:06+06:00", read=False)
    id: str
    kind: str | None = None
    title: str | None = None
    text: str | None = None
    created_at: Moment | None = None
    read: bool | None = None


class NearbyKindergarten(Answer):
    model_config = example(id="bsk-12", name="Ак-Бата", district="41711210000000", address="Бишкек, ул. Киевская 1",
                           lat=42.8746, lon=74.5698, languages=["ky", "ru"], distance_m=640)
    id: str
    name: str | None = None
    district: str | None = None
    address: str | None = None
    lat: float | None = None
    lon: float | None = None
    languages: list[str] = Field(default_factory=list)
    distance_m: int = Field(description="metres from the application's address, as the crow flies")


class Removed(Answer):
    model_config = example(status="removed")
    status: Literal["removed"]


class ReferralActed(Answer):
    """What the referral's workflow did: the fact it produced and where the referral is now."""
    model_config = example(event="referral.cancelled", state="cancelled", deadline=None, reason=None)
    event: str
    state: str
    deadline: Moment | None = None
    reason: str | None = None
