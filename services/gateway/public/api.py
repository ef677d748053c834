"""Routes of the public stream: its contract (open to anyone) and the webhook
administration, for an administrator only: a service token of the `kezek`
command acting for an admin (`kezek webhooks ...`, services/gateway/public/
cli.py), or of the staff pages for a signed-in admin. Every change an
administrator makes is in the audit trail with that verified actor."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from kezek.db import make_session_factory, service_engine, unit_of_work
from kezek.openapi import Moment, example
from kezek.trust import PUBLIC, Access, allow, staff
from kezek.web import DomainError
from services.gateway.models import trail
from services.gateway.public import contract, webhooks
from services.gateway.public.config import PublicSettings, public_settings
from services.gateway.public.models import WebhookAttempt, WebhookDelivery, WebhookReplay, WebhookSubscription
from services.gateway.public.projection import public_types

PREFIX = "/api/v1/public"
contract_router = APIRouter(prefix=PREFIX, dependencies=[PUBLIC])
ADMIN_ONLY = allow(staff("admin"))
admin_router = APIRouter(prefix=PREFIX, dependencies=[ADMIN_ONLY])


class PublicContext:
    """The router's settings and database, made on the first request (or
    handed in by a test) and kept on the app."""

    def __init__(self, settings: PublicSettings, database_url: str | None = None):
        self.settings = settings
        self.engine = service_engine(settings, "gateway", url=database_url)
        self.sessions = make_session_factory(self.engine)


def context(request: Request) -> PublicContext:
    ctx = getattr(request.app.state, "public", None)
    if ctx is None:
        gateway = getattr(request.app.state, "gateway", None)
        ctx = PublicContext(public_settings(getattr(gateway, "settings", None)))
        request.app.state.public = ctx
    return ctx


Ctx = Annotated[PublicContext, Depends(context)]


class AdminContext:
    """The router's context and the administrator acting (verified)."""

    def __init__(self, ctx: Ctx, access: Access = ADMIN_ONLY):
        self.settings, self.sessions, self.access = ctx.settings, ctx.sessions, access

    def audit(self, s: Session, action: str, subject: str, **details) -> None:
        trail.record(s, self.access.principal, action, subject, details=details)


Admin = Annotated[AdminContext, Depends(AdminContext)]

# ---------------------------------------------------------------- contract


class SchemaList(BaseModel):
    model_config = example(types=["public.place.published.v1", "public.referral.issued.v1"],
                           schema_url="/api/v1/public/schemas/{type}.json")
    types: list[str]
    schema_url: str


class YamlResponse(Response):
    media_type = "application/yaml"


class JsonSchemaResponse(JSONResponse):
    media_type = "application/schema+json"


@contract_router.get("/asyncapi.yaml", tags=["public stream"], response_class=YamlResponse,
                     responses={200: {"content": {"application/yaml": {"schema": {
                                          "type": "object", "description": "the AsyncAPI 3 document"}},
                                      "text/plain": {"schema": {"type": "string"}}},
                                      "description": "YAML; as text/plain to a browser"}},
                     summary="The AsyncAPI 3 document of kezek.public.v1")
def asyncapi(request: Request) -> Response:
    path = contract.ASYNCAPI_PATH
    text = path.read_text() if path.is_file() else contract.asyncapi_yaml()
    # A browser would save application/yaml as a file: it gets the same text to read.
    browser = "text/html" in request.headers.get("accept", "")
    return Response(text, media_type="text/plain; charset=utf-8" if browser else "application/yaml",
                    headers={"Vary": "Accept", "Content-Disposition": 'inline; filename="asyncapi.yaml"'})


@contract_router.get("/schemas", tags=["public stream"], summary="The public event types", response_model=SchemaList)
def schema_list() -> dict:
    return {"types": public_types(), "schema_url": "/api/v1/public/schemas/{type}.json"}


@contract_router.get("/schemas/{event_type}.json", tags=["public stream"], response_class=JsonSchemaResponse,
                     summary="JSON Schema of one public event type")
def schema(event_type: str) -> JSONResponse:
    try:
        return JsonSchemaResponse(contract.public_schema(event_type))
    except KeyError:
        raise DomainError(f"type: {event_type!r} is not a public event type", field="type", status_code=404) from None


# ---------------------------------------------------------------- webhooks


class NewSubscription(BaseModel):
    model_config = example(url="https://stat.example.kg/kezek/events", event_types=["public.referral.issued.v1"],
                           description="the statistics office's counts")
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=50)
    description: str = Field("", max_length=500)


class SubscriptionChange(BaseModel):
    model_config = example(active=False)
    url: str | None = Field(None, min_length=1, max_length=2000)
    event_types: list[str] | None = Field(None, min_length=1, max_length=50)
    description: str | None = Field(None, max_length=500)
    active: bool | None = None


class ReplayRequest(BaseModel):
    model_config = example(from_offset=1200, partition=0)
    from_offset: int = Field(ge=0, description="first offset to deliver again (0: the whole retained topic)")
    partition: int | None = Field(None, ge=0, description="one partition; omitted: every partition")


class Subscription(BaseModel):
    model_config = example(id="wh_3f9a", url="https://stat.example.kg/kezek/events",
                           event_types=["public.referral.issued.v1"], description="the statistics office's counts",
                           active=True, created_at="2027-03-01T09:00:00+00:00")
    id: str
    url: str
    event_types: list[str]
    description: str | None
    active: bool
    created_at: Moment
    secret: str | None = Field(None, description="the signing secret: in the answer that creates it, only")


class Delivery(BaseModel):
    model_config = example(id=5512, subscription_id="wh_3f9a", generation=0,
                           event_id="2a1c9e6e-5f1b-4a8e-9d1c-7b3e2f4a5c6d", event_type="public.referral.issued.v1",
                           subject="c_8f2e", partition=0, offset=1201, status="delivered", attempts=1,
                           next_attempt_at=None, last_status_code=200, last_error=None,
                           created_at="2027-03-01T09:00:06+00:00", delivered_at="2027-03-01T09:00:07+00:00")
    id: int
    subscription_id: str
    generation: int
    event_id: str
    event_type: str
    subject: str
    partition: int
    offset: int
    status: str = Field(description="pending | delivered | dead | skipped")
    attempts: int
    next_attempt_at: Moment | None
    last_status_code: int | None
    last_error: str | None
    created_at: Moment | None
    delivered_at: Moment | None


class Attempt(BaseModel):
    attempt: int
    at: Moment | None
    status_code: int | None
    error: str | None
    duration_ms: int | None


class DeliveryLog(Delivery):
    model_config = example({**Delivery.model_json_schema()["examples"][0], "log": [
        {"attempt": 1, "at": "2027-03-01T09:00:07+00:00", "status_code": 200, "error": None, "duration_ms": 84}]})
    log: list[Attempt]


class Replay(BaseModel):
    model_config = example(id=3, subscription_id="wh_3f9a", partition=0, from_offset=1200, status="requested",
                           requested_at="2027-03-02T08:00:00+00:00", done_at=None, queued=0)
    id: int
    subscription_id: str
    partition: int | None
    from_offset: int
    status: str
    requested_at: Moment | None
    done_at: Moment | None
    queued: int | None


def _subscription(s: WebhookSubscription, secret: bool = False) -> dict:
    out = {"id": s.id, "url": s.url, "event_types": s.event_types, "description": s.description,
           "active": s.active, "created_at": _iso(s.created_at)}
    if secret:
        out["secret"] = s.secret
    return out


def _iso(value: datetime | None) -> str | None:
    """A moment with its offset (SQLite hands back UTC moments without one)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _delivery(d: WebhookDelivery) -> dict:
    return {"id": d.id, "subscription_id": d.subscription_id, "generation": d.generation, "event_id": d.event_id,
            "event_type": d.event_type, "subject": d.subject, "partition": d.partition, "offset": d.offset,
            "status": d.status, "attempts": d.attempts, "next_attempt_at": _iso(d.next_attempt_at),
            "last_status_code": d.last_status_code, "last_error": d.last_error,
            "created_at": _iso(d.created_at), "delivered_at": _iso(d.delivered_at)}


def _replay(r: WebhookReplay) -> dict:
    return {"id": r.id, "subscription_id": r.subscription_id, "partition": r.partition, "from_offset": r.from_offset,
            "status": r.status, "requested_at": _iso(r.requested_at), "done_at": _iso(r.done_at), "queued": r.queued}


@admin_router.post("/admin/webhooks", status_code=201, tags=["webhooks"],
             summary="Register a URL for public event types; the answer carries the signing secret once",
             response_model=Subscription, response_model_exclude_unset=True)
def create_webhook(body: NewSubscription, ctx: Admin) -> dict:
    with unit_of_work(ctx.sessions) as s:
        sub = webhooks.create_subscription(s, body.url, body.event_types, body.description, ctx.settings.env)
        ctx.audit(s, "webhook.created", f"webhook:{sub.id}", url=sub.url, event_types=sub.event_types)
        return _subscription(sub, secret=True)


@admin_router.get("/admin/webhooks", tags=["webhooks"], response_model=list[Subscription],
                  response_model_exclude_unset=True)
def list_webhooks(ctx: Admin) -> list[dict]:
    with ctx.sessions() as s:
        return [_subscription(x) for x in s.scalars(sa.select(WebhookSubscription).order_by(WebhookSubscription.created_at))]


@admin_router.get("/admin/webhooks/{subscription_id}", tags=["webhooks"], response_model=Subscription,
                  response_model_exclude_unset=True)
def get_webhook(subscription_id: str, ctx: Admin) -> dict:
    with ctx.sessions() as s:
        return _subscription(webhooks.get_subscription(s, subscription_id))


@admin_router.patch("/admin/webhooks/{subscription_id}", tags=["webhooks"], summary="Change the URL, types, or pause",
                    response_model=Subscription, response_model_exclude_unset=True)
def change_webhook(subscription_id: str, body: SubscriptionChange, ctx: Admin) -> dict:
    with unit_of_work(ctx.sessions) as s:
        sub = webhooks.get_subscription(s, subscription_id)
        url = body.url if body.url is not None else sub.url
        types = body.event_types if body.event_types is not None else sub.event_types
        webhooks.validate_subscription(url, types, ctx.settings.env)
        sub.url, sub.event_types = url, sorted(set(types))
        if body.description is not None:
            sub.description = body.description
        if body.active is not None:
            sub.active = body.active
        ctx.audit(s, "webhook.changed", f"webhook:{sub.id}", **body.model_dump(exclude_none=True))
        return _subscription(sub)


@admin_router.delete("/admin/webhooks/{subscription_id}", status_code=204, tags=["webhooks"])
def delete_webhook(subscription_id: str, ctx: Admin) -> Response:
    with unit_of_work(ctx.sessions) as s:
        sub = webhooks.get_subscription(s, subscription_id)
        # Explicit, not ON DELETE CASCADE: SQLite enforces it only per connection setting.
        deliveries = sa.select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == sub.id)
        s.execute(sa.delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(deliveries)))
        s.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.subscription_id == sub.id))
        s.execute(sa.delete(WebhookReplay).where(WebhookReplay.subscription_id == sub.id))
        s.delete(sub)
        ctx.audit(s, "webhook.deleted", f"webhook:{subscription_id}")
    return Response(status_code=204)


@admin_router.get("/admin/webhooks/{subscription_id}/deliveries", tags=["webhooks"], summary="The delivery log",
                  response_model=list[Delivery])
def deliveries(subscription_id: str, ctx: Admin,
               status: Literal["pending", "delivered", "dead", "skipped"] | None = None,
               after_id: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict]:
    with ctx.sessions() as s:
        webhooks.get_subscription(s, subscription_id)
        q = sa.select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id,
                                             WebhookDelivery.id > after_id)
        if status:
            q = q.where(WebhookDelivery.status == status)
        return [_delivery(d) for d in s.scalars(q.order_by(WebhookDelivery.id).limit(limit))]


@admin_router.get("/admin/webhooks/deliveries/{delivery_id}", tags=["webhooks"], summary="One delivery with every attempt",
                  response_model=DeliveryLog)
def delivery(delivery_id: int, ctx: Admin) -> dict:
    with ctx.sessions() as s:
        d = webhooks.get_delivery(s, delivery_id)
        attempts = s.scalars(sa.select(WebhookAttempt).where(WebhookAttempt.delivery_id == d.id)
                             .order_by(WebhookAttempt.attempt)).all()
        return {**_delivery(d), "log": [{"attempt": a.attempt, "at": _iso(a.at), "status_code": a.status_code,
                                         "error": a.error, "duration_ms": a.duration_ms} for a in attempts]}


@admin_router.post("/admin/webhooks/deliveries/{delivery_id}/retry", tags=["webhooks"],
             summary="Try a dead delivery again (it keeps its place in its subject's order)", response_model=Delivery)
def retry(delivery_id: int, ctx: Admin) -> dict:
    return _settle(ctx, delivery_id, webhooks.retry_delivery, "webhook.delivery_retried")


@admin_router.post("/admin/webhooks/deliveries/{delivery_id}/skip", tags=["webhooks"],
             summary="Give up a delivery so the later ones of its subject go out", response_model=Delivery)
def skip(delivery_id: int, ctx: Admin) -> dict:
    return _settle(ctx, delivery_id, webhooks.skip_delivery, "webhook.delivery_skipped")


def _settle(ctx: AdminContext, delivery_id: int, settle, action: str) -> dict:
    with unit_of_work(ctx.sessions) as s:
        ctx.audit(s, action, f"delivery:{delivery_id}")
        return _delivery(settle(s, delivery_id))


@admin_router.post("/admin/webhooks/{subscription_id}/replay", status_code=202, tags=["webhooks"],
             summary="Deliver the stream again from an offset (the dispatcher reads it up to its current end)",
             response_model=Replay)
def replay(subscription_id: str, body: ReplayRequest, ctx: Admin) -> dict:
    with unit_of_work(ctx.sessions) as s:
        r = webhooks.request_replay(s, subscription_id, body.from_offset, body.partition)
        s.flush()
        ctx.audit(s, "webhook.replay_requested", f"webhook:{subscription_id}", replay=r.id,
                  from_offset=body.from_offset, partition=body.partition)
        return _replay(r)


@admin_router.get("/admin/webhooks/{subscription_id}/replays", tags=["webhooks"], response_model=list[Replay])
def replays(subscription_id: str, ctx: Admin) -> list[dict]:
    with ctx.sessions() as s:
        webhooks.get_subscription(s, subscription_id)
        return [_replay(r) for r in s.scalars(sa.select(WebhookReplay).where(
            WebhookReplay.subscription_id == subscription_id).order_by(WebhookReplay.id))]
