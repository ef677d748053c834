"""What the queue's API reads and answers (pydantic models). Every text
field refuses control characters: they have no place in a name or an id,
and PostgreSQL refuses a NUL outright."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.queue.domain.entries import MAX_PREFERENCES

NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Text = Annotated[str, Field(pattern=NO_CONTROL)]
KgId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
EntryId = Annotated[str, Path(min_length=1, max_length=100, pattern=NO_CONTROL)]
Lang = Annotated[str, Field(min_length=2, max_length=5, pattern=r"^[a-z]{2,5}$")]
Cohort = Annotated[int, Field(ge=1990, le=2200, description="birth year")]
Pin = Annotated[str, Field(pattern=r"^([0-9]{14}|[0-9]{12})$", description="KG PIN (14 digits) or KZ IIN (12)")]
Id = Annotated[int, Field(ge=0, le=2**62)]      # row ids: within every database's integer


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KindergartenIn(_In):
    name: Text = Field(min_length=1, max_length=200)
    district: Text = Field(min_length=1, max_length=100)
    address: Text = Field("", max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    languages: list[Lang] = Field(min_length=1, max_length=6)


class Kindergarten(KindergartenIn):
    id: str
    closed_at: datetime | None = Field(None, description="closed by its district office: no places, no preferences")


class CloseIn(_In):
    reason: Text = Field("", max_length=200)


class LeaveIn(_In):
    reason: Text = Field("", max_length=200, description="why the child left (moved, school ...)")


class District(BaseModel):
    district: str
    kindergartens: int
    open: int


class WithdrawIn(_In):
    cohort: Cohort
    language: Lang
    count: int = Field(ge=1, le=10_000)
    for_category: Text | None = Field(None, min_length=1, max_length=50,
                                      description="only this category may take them; null: open to all")


class PublishIn(WithdrawIn):
    publish_at: AwareDatetime | None = Field(None, description="publish later, on this schedule")


class PlacePool(BaseModel):
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None
    free: int
    held: int
    enrolled: int


class Published(PlacePool):
    publication: int
    published: bool
    publish_at: datetime


class Scheduled(BaseModel):
    publication: int
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None
    count: int
    publish_at: datetime
    status: str = Field("scheduled", description="scheduled | published | cancelled")
    published_at: datetime | None = None
    cancelled_at: datetime | None = None


class StaffReferral(BaseModel):
    """A referral to a kindergarten as its staff see it: with the child, for the enrolment."""
    id: int
    application_id: str
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None
    category: str
    needs_confirmation: bool
    status: str = Field(description="live | enrolled | ended")
    state: str = Field(description="the workflow's state: awaiting_confirmation, awaiting_enrolment, enrolled ...")
    outcome: str | None
    issued_at: datetime
    deadline: datetime | None
    ended_at: datetime | None
    left_at: datetime | None
    entry_status: str
    child: str = Field(description="full name")
    pin: str
    birth_date: date
    parent_id: str | None


class WaitingGroup(BaseModel):
    cohort: int
    language: str
    children: int


class PlaceFigures(BaseModel):
    free: int
    held: int
    taken: int
    published: int = Field(description="places published this month")
    withdrawn: int = Field(description="free places withdrawn this month")


class ReferralFigures(BaseModel):
    issued: int
    enrolled: int
    expired: int
    cancelled: int
    rejected: int = Field(description="privilege not confirmed or found false")
    left: int = Field(description="enrolled children who left this month")


class Figures(BaseModel):
    district: str | None = Field(description="null: every district together")
    month: str
    kindergartens: int = Field(description="open kindergartens")
    waiting: list[WaitingGroup]
    waiting_total: int
    median_days_waiting: float | None
    places: PlaceFigures
    referrals: ReferralFigures


class Overview(BaseModel):
    month: str
    total: Figures
    districts: list[Figures]


Preferences = list[Annotated[str, Field(min_length=1, max_length=100, pattern=NO_CONTROL)]]


class JoinIn(_In):
    pin: Pin
    surname: Text = Field(min_length=1, max_length=60)
    name: Text = Field(min_length=1, max_length=60)
    patronymic: Text | None = Field(None, max_length=60)
    birth_date: date | None = Field(None, description="must agree with the PIN")
    category: Text = Field("general", min_length=1, max_length=50)
    language: Lang
    preferences: Preferences = Field(min_length=1, max_length=MAX_PREFERENCES, description="kindergarten ids, best first")
    parent_id: Text | None = Field(None, min_length=1, max_length=100)
    locale: str = Field("ru", pattern=r"^(ky|ru|kk|en)$")
    application_id: Text | None = Field(None, min_length=1, max_length=100,
                                        description="keep the id of a migrated application")
    queue_date: AwareDatetime | None = Field(None, description="only for data migrated from a previous system")


class ReferralOut(BaseModel):
    id: int
    kindergarten: str
    cohort: int
    language: str
    status: str
    state: str
    issued_at: datetime
    deadline: datetime | None
    needs_confirmation: bool


class QueueEntry(BaseModel):
    id: str
    status: str = Field(description="queued | referred | enrolled | paused | removed | left | aged_out")
    category: str
    claimed_category: str
    queue_date: datetime
    cohort: int
    birth_date: date
    language: str
    preferences: list[str]
    paused_until: datetime | None
    left_at: datetime | None = Field(None, description="when the child left the kindergarten it was enrolled in")
    parent_id: str | None
    child: str = Field(description="masked name")
    referral: ReferralOut | None = None


class RemoveIn(_In):
    reason: Text = Field("", max_length=200)


class PreferencesIn(_In):
    preferences: Preferences = Field(min_length=1, max_length=MAX_PREFERENCES)


class RevokeIn(_In):
    reason: Text = Field(min_length=1, max_length=500)


class Position(BaseModel):
    kindergarten: str
    cohort: int
    position: int = Field(description="1-based, among waiting children of the cohort who list this kindergarten")
    ahead: int
    ahead_by_category: dict[str, int] = Field(description="children ahead because their category ranks first")
    ahead_same_category_earlier: int = Field(description="same category, earlier queue date")
    ahead_same_moment: int = Field(description="same category and queue date, earlier registration number")
    category: str
    queue_date: datetime
    explanation: str


class PublicEntry(BaseModel):
    number: int = Field(description="1-based, among the waiting children of this cohort and language")
    position: int = Field(description="the position the parent's cabinet shows: among the waiting children of "
                                      "the cohort who list this kindergarten, in every language")
    child: str = Field(description="masked name")
    queue_date: datetime
    category: str
    preference: int = Field(description="where this kindergarten stands in the child's list (1 = first)")
    eligible_today: bool = Field(description="2 full years old today")


class PublicPool(BaseModel):
    for_category: str | None
    free: int
    held: int
    enrolled: int


class PublicQueue(BaseModel):
    kindergarten: str
    cohort: int
    language: str
    total: int
    places: list[PublicPool]
    entries: list[PublicEntry]


class AuditRecord(BaseModel):
    id: int
    at: datetime
    kind: str = Field(description="act: a state change; look: a member of staff looked at a child's data")
    actor: str = Field(description="the verified actor: parent:<id>, staff:<id>, service:<name>, or the "
                                   "queue's own cause (system:allocator, event:<id> ...)")
    actor_role: str
    via: str | None = Field(description="the service that vouched for a person")
    action: str
    subject: str
    outcome: str
    reason: str | None
    details: dict[str, Any]


class AllocationRecord(BaseModel):
    run_id: int
    referral_id: int
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None
    preference_index: int
    inputs: dict[str, Any]


class Run(BaseModel):
    run_id: int
    started_at: datetime
    finished_at: datetime | None
    on: date
    trigger: str
    candidates: int
    allocated: int
    digest: str


class Replay(BaseModel):
    run_id: int
    on: str
    allocations: int
    candidates: int
    matches: bool
    problems: list[str]


class PolicyIn(_In):
    changes: dict[str, Any] = Field(description="policy fields to change, e.g. {\"stoplist_days\": 14}")
    reason: Text = Field(min_length=1, max_length=500)


class PolicyOut(BaseModel):
    version: int | None
    policy: dict[str, Any]


class PolicyVersion(BaseModel):
    version: int
    policy: dict[str, Any]
    changed_at: datetime
    actor: str
    reason: str


class Erasure(BaseModel):
    application_id: str
    erased: bool = Field(description="true: every service anonymises its data of the application (now, or already did)")
    anonymised_at: str | None = None
