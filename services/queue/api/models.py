"""What the queue's API reads and answers (pydantic models). Every text
field refuses control characters: they have no place in a name or an id,
and PostgreSQL refuses a NUL outright."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kezek.openapi import example
from services.queue.domain.entries import MAX_PREFERENCES

NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Text = Annotated[str, Field(pattern=NO_CONTROL)]
KgId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
EntryId = Annotated[str, Path(min_length=1, max_length=100, pattern=NO_CONTROL)]
Lang = Annotated[str, Field(min_length=2, max_length=5, pattern=r"^[a-z]{2,5}$")]
Cohort = Annotated[int, Field(ge=1990, le=2200, description="birth year")]
Pin = Annotated[str, Field(pattern=r"^([0-9]{14}|[0-9]{12})$", description="KG PIN (14 digits) or KZ IIN (12)")]
Id = Annotated[int, Field(ge=0, le=2**62)]      # row ids: within every database's integer


_FIGURES = {
    "district": "41711210000000", "month": "2027-03", "kindergartens": 47,
    "waiting": [{"cohort": 2023, "language": "ky", "children": 412}], "waiting_total": 1530,
    "median_days_waiting": 214.5, "places": {"free": 31, "held": 12, "taken": 2040, "published": 45, "withdrawn": 2},
    "referrals": {"issued": 44, "enrolled": 30, "expired": 3, "cancelled": 2, "rejected": 1, "left": 6},
}


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KindergartenIn(_In):
    model_config = example(name="Ак-Бата", district="41711210000000", address="Бишкек, ул. Киевская 1", lat=42.8746,
                           lon=74.5698, languages=["ky", "ru"])
    name: Text = Field(min_length=1, max_length=200)
    district: Text = Field(min_length=1, max_length=100)
    address: Text = Field("", max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    languages: list[Lang] = Field(min_length=1, max_length=6)


class Kindergarten(KindergartenIn):
    model_config = example(id="bsk-12", name="Ак-Бата", district="41711210000000", address="Бишкек, ул. Киевская 1",
                           lat=42.8746, lon=74.5698, languages=["ky", "ru"], closed_at=None)
    id: str
    closed_at: datetime | None = Field(None, description="closed by its district office: no places, no preferences")


class CloseIn(_In):
    model_config = example(reason="the building is closed for repair")
    reason: Text = Field("", max_length=200)


class LeaveIn(_In):
    model_config = example(reason="the family moved to Osh")
    reason: Text = Field("", max_length=200, description="why the child left (moved, school ...)")


class District(BaseModel):
    model_config = example(district="41711210000000", kindergartens=48, open=47)
    district: str
    kindergartens: int
    open: int


class WithdrawIn(_In):
    model_config = example(cohort=2023, language="ky", count=2, for_category=None)
    cohort: Cohort
    language: Lang
    count: int = Field(ge=1, le=10_000)
    for_category: Text | None = Field(None, min_length=1, max_length=50,
                                      description="only this category may take them; null: open to all")


class PublishIn(WithdrawIn):
    model_config = example(cohort=2023, language="ky", count=5, for_category=None,
                           publish_at="2027-03-01T09:00:00+06:00")
    publish_at: AwareDatetime | None = Field(None, description="publish later, on this schedule")


class PlacePool(BaseModel):
    model_config = example(kindergarten="bsk-12", cohort=2023, language="ky", for_category=None, free=3, held=2,
                           enrolled=20)
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None
    free: int
    held: int
    enrolled: int


class Published(PlacePool):
    model_config = example(kindergarten="bsk-12", cohort=2023, language="ky", for_category=None, free=8, held=2,
                           enrolled=20, publication=41, published=True, publish_at="2027-03-01T09:00:00+06:00")
    publication: int
    published: bool
    publish_at: datetime


class Scheduled(BaseModel):
    model_config = example(publication=41, kindergarten="bsk-12", cohort=2023, language="ky", for_category=None,
                           count=5, publish_at="2027-03-01T09:00:00+06:00", status="scheduled", published_at=None,
                           cancelled_at=None)
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
    model_config = example(id=7, application_id="app-1f3a", kindergarten="bsk-12", cohort=2023, language="ky",
                           for_category=None, category="general", needs_confirmation=False, status="live",
                           state="awaiting_enrolment", outcome=None, issued_at="2027-03-01T09:00:05+06:00",
                           deadline="2027-03-11T00:00:00+06:00", ended_at=None, left_at=None, entry_status="referred",
                           child="Асанов Айбек Русланович", pin="21506202300011", birth_date="2023-06-15",
                           parent_id="acc-9c1e")
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
    model_config = example(_FIGURES["waiting"][0])
    cohort: int
    language: str
    children: int


class PlaceFigures(BaseModel):
    model_config = example(_FIGURES["places"])
    free: int
    held: int
    taken: int
    published: int = Field(description="places published this month")
    withdrawn: int = Field(description="free places withdrawn this month")


class ReferralFigures(BaseModel):
    model_config = example(_FIGURES["referrals"])
    issued: int
    enrolled: int
    expired: int
    cancelled: int
    rejected: int = Field(description="privilege not confirmed or found false")
    left: int = Field(description="enrolled children who left this month")


class Figures(BaseModel):
    model_config = example(_FIGURES)
    district: str | None = Field(description="null: every district together")
    month: str
    kindergartens: int = Field(description="open kindergartens")
    waiting: list[WaitingGroup]
    waiting_total: int
    median_days_waiting: float | None
    places: PlaceFigures
    referrals: ReferralFigures


class Overview(BaseModel):
    model_config = example(month="2027-03", total={**_FIGURES, "district": None}, districts=[_FIGURES])
    month: str
    total: Figures
    districts: list[Figures]


Preferences = list[Annotated[str, Field(min_length=1, max_length=100, pattern=NO_CONTROL)]]


class JoinIn(_In):
    model_config = example(pin="21506202300011", surname="Асанов", name="Айбек", patronymic="Русланович",
                           birth_date="2023-06-15", category="general", language="ky",
                           preferences=["bsk-12", "bsk-7"], parent_id="acc-9c1e", locale="ky")
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
    model_config = example(id=7, kindergarten="bsk-12", cohort=2023, language="ky", status="live",
                           state="awaiting_enrolment", issued_at="2027-03-01T09:00:05+06:00",
                           deadline="2027-03-11T00:00:00+06:00", needs_confirmation=False, extended=False)
    id: int
    kindergarten: str
    cohort: int
    language: str
    status: str
    state: str
    issued_at: datetime
    deadline: datetime | None
    needs_confirmation: bool
    extended: bool = Field(False, description="the one extension of the confirmation window is used")


class QueueEntry(BaseModel):
    model_config = example(id="app-1f3a", status="queued", category="general", claimed_category="general",
                           queue_date="2026-11-20T10:15:00+06:00", cohort=2023, birth_date="2023-06-15",
                           language="ky", preferences=["bsk-12", "bsk-7"], paused_until=None, left_at=None,
                           parent_id="acc-9c1e", child="Асанов А. Р.", referral=None)
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


class FindIn(_In):
    """A search by PIN says why (kezek/looks.py); the PIN travels in the
    body, never in a URL (access logs keep URLs)."""
    pin: Pin
    purpose: Literal["parent_visit", "document_check", "abuse_check", "official_request", "other"] = Field(
        description="why the member of staff looks the child up")
    note: Text = Field("", max_length=200,
                       description="the request's reference (official_request), or the purpose (other)")


class RemoveIn(_In):
    model_config = example(reason="the family withdrew the application")
    reason: Text = Field("", max_length=200)


class PreferencesIn(_In):
    model_config = example(preferences=["bsk-7", "bsk-12"])
    preferences: Preferences = Field(min_length=1, max_length=MAX_PREFERENCES)


class RevokeIn(_In):
    model_config = example(reason="the certificate was found false (decision 17 of 24.11.2026)")
    reason: Text = Field(min_length=1, max_length=500)


class Position(BaseModel):
    model_config = example(kindergarten="bsk-12", cohort=2023, position=14, ahead=13,
                           ahead_by_category={"privileged": 4}, ahead_same_category_earlier=9, ahead_same_moment=0,
                           category="general", queue_date="2026-11-20T10:15:00+06:00",
                           explanation="4 children ahead by category, 9 of the same category registered earlier")
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
    model_config = example(number=1, position=1, child="Асанов А. Р.", queue_date="2026-11-20T10:15:00+06:00",
                           category="general", preference=1, eligible_today=True)
    number: int = Field(description="1-based, among the waiting children of this cohort and language")
    position: int = Field(description="the position the parent's cabinet shows: among the waiting children of "
                                      "the cohort who list this kindergarten, in every language")
    child: str = Field(description="masked name")
    queue_date: datetime
    category: str
    preference: int = Field(description="where this kindergarten stands in the child's list (1 = first)")
    eligible_today: bool = Field(description="2 full years old today")


class PublicPool(BaseModel):
    model_config = example(for_category=None, free=3, held=2, enrolled=20)
    for_category: str | None
    free: int
    held: int
    enrolled: int


class PublicQueue(BaseModel):
    model_config = example(kindergarten="bsk-12", cohort=2023, language="ky", total=1,
                           places=[{"for_category": None, "free": 3, "held": 2, "enrolled": 20}],
                           entries=[{"number": 1, "position": 1, "child": "Асанов А. Р.",
                                     "queue_date": "2026-11-20T10:15:00+06:00", "category": "general",
                                     "preference": 1, "eligible_today": True}])
    kindergarten: str
    cohort: int
    language: str
    total: int
    places: list[PublicPool]
    entries: list[PublicEntry]


class AuditRecord(BaseModel):
    model_config = example(id=1201, at="2027-03-01T09:00:05+06:00", kind="act", actor="staff:12",
                           actor_role="kindergarten", via="verification", action="places.published",
                           subject="kindergarten:bsk-12", outcome="ok", reason=None,
                           details={"cohort": 2023, "language": "ky", "count": 5})
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
    model_config = example(run_id=88, referral_id=7, kindergarten="bsk-12", cohort=2023, language="ky",
                           for_category=None, preference_index=0,
                           inputs={"category": "general", "queue_date": "2026-11-20T10:15:00+06:00"})
    run_id: int
    referral_id: int
    kindergarten: str
    cohort: int
    language: str
    for_category: str | None
    preference_index: int
    inputs: dict[str, Any]


class Run(BaseModel):
    model_config = example(run_id=88, started_at="2027-03-01T09:00:00+06:00", finished_at="2027-03-01T09:00:02+06:00",
                           on="2027-03-01", trigger="places.published", candidates=1530, allocated=5,
                           digest="9f2c41d0")
    run_id: int
    started_at: datetime
    finished_at: datetime | None
    on: date
    trigger: str
    candidates: int
    allocated: int
    digest: str


class Replay(BaseModel):
    model_config = example(run_id=88, on="2027-03-01", allocations=5, candidates=1530, matches=True, problems=[])
    run_id: int
    on: str
    allocations: int
    candidates: int
    matches: bool
    problems: list[str]


class PolicyIn(_In):
    model_config = example(changes={"stoplist_days": 14}, reason="order 112 of the ministry, 1 March 2027")
    changes: dict[str, Any] = Field(description="policy fields to change, e.g. {\"stoplist_days\": 14}")
    reason: Text = Field(min_length=1, max_length=500)


class PolicyOut(BaseModel):
    model_config = example(version=3, policy={"stoplist_days": 14, "school_age_years": 7})
    version: int | None
    policy: dict[str, Any]


class PolicyVersion(BaseModel):
    model_config = example(version=3, policy={"stoplist_days": 14, "school_age_years": 7},
                           changed_at="2027-03-01T09:00:00+06:00", actor="staff:1",
                           reason="order 112 of the ministry, 1 March 2027")
    version: int
    policy: dict[str, Any]
    changed_at: datetime
    actor: str
    reason: str
