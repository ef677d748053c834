"""The queue's HTTP API, versioned under /api/v1 and documented by OpenAPI
(/docs). Kindergartens and the register of free places, queue entries,
positions with their explanation, the anonymised public queue, the audit
trail, allocation runs with their replay, and the policy.

Who acts is given by the gateway in the `X-Actor` header ("parent:<id>",
"kindergarten:<id>", "admin:<id>"); the audit log records it. Allocation has
no endpoint: it is never started by a person.
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from kezek.settings import Settings
from kezek.web import DomainError, create_service_app, database_check, problem_response
from services.queue import domain as d
from services.queue.domain.commands import JoinQueue
from services.queue.domain.refusals import NotFound, Refused
from services.queue.usecases import Queue

PREFIX = "/api/v1"
KgId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")]
Lang = Annotated[str, Field(min_length=2, max_length=5, pattern=r"^[a-z]{2,5}$")]
Cohort = Annotated[int, Field(ge=1990, le=2200, description="birth year")]


def get_queue(request: Request) -> Queue:
    return request.app.state.queue


Service = Annotated[Queue, Depends(get_queue)]
Actor = Annotated[str, Header(alias="X-Actor", min_length=1, max_length=100,
                              description="who acts, set by the gateway: parent:<id>, admin:<id> ...")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KindergartenIn(_In):
    name: str = Field(min_length=1, max_length=200)
    district: str = Field(min_length=1, max_length=100)
    address: str = Field("", max_length=200)
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    languages: list[Lang] = Field(min_length=1, max_length=6)


class Kindergarten(KindergartenIn):
    id: str


class WithdrawIn(_In):
    cohort: Cohort
    language: Lang
    count: int = Field(ge=1, le=10_000)
    for_category: str | None = Field(None, min_length=1, max_length=50,
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


class JoinIn(_In):
    pin: str = Field(pattern=r"^([0-9]{14}|[0-9]{12})$", description="KG PIN (14 digits) or KZ IIN (12)")
    surname: str = Field(min_length=1, max_length=60)
    name: str = Field(min_length=1, max_length=60)
    patronymic: str | None = Field(None, max_length=60)
    birth_date: date | None = Field(None, description="must agree with the PIN")
    category: str = Field("general", min_length=1, max_length=50)
    language: Lang
    preferences: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=d.MAX_PREFERENCES, description="kindergarten ids, best first")
    parent_id: str | None = Field(None, max_length=100)
    locale: str = Field("ru", pattern=r"^(ky|ru|kk|en)$")
    application_id: str | None = Field(None, min_length=1, max_length=100,
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
    status: str = Field(description="queued | referred | enrolled | paused | removed")
    category: str
    claimed_category: str
    queue_date: datetime
    cohort: int
    birth_date: date
    language: str
    preferences: list[str]
    paused_until: datetime | None
    parent_id: str | None
    child: str = Field(description="masked name")
    referral: ReferralOut | None = None


class RemoveIn(_In):
    reason: str = Field("", max_length=200)


class PreferencesIn(_In):
    preferences: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=d.MAX_PREFERENCES)


class RevokeIn(_In):
    reason: str = Field(min_length=1, max_length=500)


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
    number: int
    child: str = Field(description="masked name")
    queue_date: datetime
    category: str
    preference: int = Field(description="where this kindergarten stands in the child's list (1 = first)")
    eligible_today: bool = Field(description="2 full years old today")


class PublicQueue(BaseModel):
    kindergarten: str
    cohort: int
    language: str
    total: int
    places: list[dict[str, Any]]
    entries: list[PublicEntry]


class PolicyIn(_In):
    changes: dict[str, Any] = Field(description="policy fields to change, e.g. {\"stoplist_days\": 14}")
    reason: str = Field(min_length=1, max_length=500)


router = APIRouter(prefix=PREFIX)


# ------------------------------------------------------------ kindergartens

@router.get("/kindergartens", response_model=list[Kindergarten], tags=["kindergartens"])
def list_kindergartens(service: Service, district: Annotated[str | None, Query(max_length=100)] = None):
    return service.kindergartens.list(district)


@router.get("/kindergartens/{kindergarten}", response_model=Kindergarten, tags=["kindergartens"])
def get_kindergarten(service: Service, kindergarten: KgId):
    return service.kindergartens.get(kindergarten)


@router.put("/kindergartens/{kindergarten}", response_model=Kindergarten, tags=["kindergartens"],
            summary="Create or update a kindergarten (administrators)")
def put_kindergarten(service: Service, kindergarten: KgId, body: KindergartenIn, actor: Actor):
    return service.kindergartens.save({"id": kindergarten, **body.model_dump()}, actor=actor)


# ------------------------------------------------------------------ places

@router.get("/kindergartens/{kindergarten}/places", response_model=list[PlacePool], tags=["places"])
def kindergarten_places(service: Service, kindergarten: KgId):
    service.kindergartens.get(kindergarten)
    return service.views.places(kindergarten)


@router.post("/kindergartens/{kindergarten}/places", status_code=201, tags=["places"],
             summary="Publish free places (now or on a schedule, optionally reserved for a category)")
def publish_places(service: Service, kindergarten: KgId, body: PublishIn, actor: Actor):
    return service.places.publish(kindergarten, body.cohort, body.language, body.count, actor=actor,
                                  for_category=body.for_category, publish_at=body.publish_at)


@router.post("/kindergartens/{kindergarten}/places/withdrawal", response_model=PlacePool, tags=["places"],
             summary="Withdraw free places (never held ones)")
def withdraw_places(service: Service, kindergarten: KgId, body: WithdrawIn, actor: Actor):
    return service.places.withdraw(kindergarten, body.cohort, body.language, body.count, actor=actor,
                                   for_category=body.for_category)


@router.get("/places", response_model=list[PlacePool], tags=["places"], summary="The register of places")
def places(service: Service, kindergarten: Annotated[str | None, Query(max_length=100)] = None):
    return service.views.places(kindergarten)


@router.get("/places/scheduled", tags=["places"], summary="Publications waiting for their moment")
def scheduled(service: Service):
    return service.views.scheduled_publications()


# ----------------------------------------------------------- queue entries

@router.post("/queue-entries", response_model=QueueEntry, status_code=201, tags=["queue"],
             summary="Join the queue (one entry per child PIN, whoever registers it)")
def join(service: Service, body: JoinIn, actor: Actor):
    app_id = service.entries.join(JoinQueue(
        pin=body.pin, surname=body.surname, name=body.name, patronymic=body.patronymic, birth_date=body.birth_date,
        category=body.category, language=body.language, preferences=tuple(body.preferences),
        parent_id=body.parent_id, locale=body.locale, application_id=body.application_id,
        queue_date=body.queue_date), actor=actor)
    return service.views.application(app_id)


@router.get("/queue-entries", response_model=QueueEntry, tags=["queue"], summary="Find the entry of a child PIN")
def find_entry(service: Service, pin: Annotated[str, Query(pattern=r"^([0-9]{14}|[0-9]{12})$")]):
    return service.views.application_by_pin(pin)


@router.get("/queue-entries/{application_id}", response_model=QueueEntry, tags=["queue"])
def get_entry(service: Service, application_id: Annotated[str, Path(max_length=100)]):
    return service.views.application(application_id)


@router.post("/queue-entries/{application_id}/removal", response_model=QueueEntry, tags=["queue"],
             summary="Remove from the queue at once (joining again starts a new queue date)")
def remove(service: Service, application_id: Annotated[str, Path(max_length=100)], body: RemoveIn, actor: Actor):
    service.entries.remove(application_id, actor=actor, reason=body.reason)
    return service.views.application(application_id)


@router.put("/queue-entries/{application_id}/preferences", response_model=QueueEntry, tags=["queue"])
def set_preferences(service: Service, application_id: Annotated[str, Path(max_length=100)], body: PreferencesIn,
                    actor: Actor):
    service.entries.set_preferences(application_id, body.preferences, actor=actor)
    return service.views.application(application_id)


@router.post("/queue-entries/{application_id}/privilege-revocation", response_model=QueueEntry, tags=["queue"],
             summary="A privilege found false: back to the general queue with the queue date")
def revoke(service: Service, application_id: Annotated[str, Path(max_length=100)], body: RevokeIn, actor: Actor):
    service.entries.revoke_privilege(application_id, actor=actor, reason=body.reason)
    return service.views.application(application_id)


@router.get("/queue-entries/{application_id}/positions", response_model=list[Position], tags=["queue"],
            summary="The position for each preference, and why")
def positions(service: Service, application_id: Annotated[str, Path(max_length=100)]):
    return [Position(kindergarten=p.kindergarten, cohort=p.cohort, position=p.position, ahead=p.ahead,
                     ahead_by_category=p.ahead_by_category, ahead_same_category_earlier=p.ahead_same_category_earlier,
                     ahead_same_moment=p.ahead_same_moment, category=p.category, queue_date=p.queue_date,
                     explanation=p.text()) for p in service.views.positions(application_id)]


@router.get("/queue-entries/{application_id}/allocations", tags=["audit"],
            summary="Each referral the child got, with the inputs that decided it")
def allocations(service: Service, application_id: Annotated[str, Path(max_length=100)]):
    service.views.application(application_id)
    return service.audit.allocation_records(application_id)


@router.get("/queue-entries/{application_id}/audit", tags=["audit"])
def entry_audit(service: Service, application_id: Annotated[str, Path(max_length=100)],
                limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    service.views.application(application_id)
    return service.audit.trail(f"application:{application_id}", limit=limit)


# ------------------------------------------------------------ transparency

@router.get("/public/queues/{kindergarten}/{cohort}/{language}", response_model=PublicQueue, tags=["public"],
            summary="The anonymised queue of a kindergarten, cohort and language")
def public_queue(service: Service, kindergarten: KgId, cohort: Annotated[int, Path(ge=1990, le=2200)],
                 language: Annotated[str, Path(pattern=r"^[a-z]{2,5}$")],
                 limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: Annotated[int, Query(ge=0)] = 0):
    return service.views.public_queue(kindergarten, cohort, language, limit=limit, offset=offset)


@router.get("/audit", tags=["audit"], summary="The audit trail: every state change, with who or what caused it")
def audit(service: Service, subject: Annotated[str | None, Query(max_length=200)] = None,
          after_id: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 200):
    return service.audit.trail(subject, limit=limit, after_id=after_id)


@router.get("/allocation-runs", tags=["audit"], summary="Allocation runs, newest first")
def runs(service: Service, limit: Annotated[int, Query(ge=1, le=500)] = 50):
    return service.audit.runs(limit)


@router.get("/allocation-runs/{run_id}/replay", tags=["audit"],
            summary="Recompute a run from its recorded inputs and compare")
def replay(service: Service, run_id: Annotated[int, Path(ge=1)]):
    reports = service.audit.replay([run_id])
    if not reports:
        raise NotFound("run_unknown", field="run_id", run_id=run_id)
    return reports[0]


# ------------------------------------------------------------------ policy

@router.get("/policy", tags=["policy"])
def get_policy(service: Service):
    policy, version = service.policy.current()
    return {"version": version, "policy": policy.to_dict()}


@router.put("/policy", tags=["policy"], summary="Change the policy (a new, audited version)")
def put_policy(service: Service, body: PolicyIn, actor: Actor):
    policy, version = service.policy.change(body.changes, actor=actor, reason=body.reason)
    return {"version": version, "policy": policy.to_dict()}


@router.get("/policy/history", tags=["policy"])
def policy_history(service: Service):
    return service.policy.history()


def create_app(settings: Settings, queue: Queue | None = None) -> FastAPI:
    if queue is None:
        from services.queue.runtime import build_queue

        queue = build_queue(settings)
    engine = queue.sessions.kw["bind"]
    app = create_service_app("queue", title="Kezek queue", ready_checks=[("database", database_check(engine))],
                             description=__doc__)
    app.state.queue = queue

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return problem_response(DomainError(exc.code, field=exc.field, status_code=exc.status_code,
                                            params=exc.params), request.url.path)

    @app.exception_handler(d.DomainError)
    async def domain_refused(_request: Request, exc: d.DomainError):
        message = str(exc)
        field, _, _ = message.partition(":")
        return JSONResponse({"detail": message, "errors": [{"field": field.strip(), "message": message}]},
                            status_code=422)

    app.include_router(router)
    return app
