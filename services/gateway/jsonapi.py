"""The parents' JSON API (/api/v1), for a mobile app: the application steps
and sign-in are open to anyone; the cabinet is the signed-in parent's
(`Authorization: Bearer <token>` from POST /api/v1/sessions). Errors are
problem details with each field's message in the caller's language
(Accept-Language)."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from kezek.trust import PUBLIC, Access, Principal, allow, parent
from services.gateway import cabinet as c
from services.gateway import family
from services.gateway.clients import UpstreamError
from services.gateway.context import Gateway
from services.gateway.geo import nearest
from services.gateway.limits import activation_wait
from services.gateway.sessions import session_secret

Json = Annotated[dict[str, Any], Body()]


def get_gateway(request: Request) -> Gateway:
    return request.app.state.gateway


Gw = Annotated[Gateway, Depends(get_gateway)]

# --- open to anyone: the application and signing in ----------------------------

anyone = APIRouter(prefix="/api/v1", dependencies=[PUBLIC])


@anyone.get("/address/regions", tags=["address"])
async def regions(gw: Gw):
    return await gw.registration.regions()


@anyone.get("/address/regions/{region}/districts", tags=["address"])
async def districts(region: str, gw: Gw):
    return await gw.registration.districts(region)


@anyone.get("/address/districts/{district}/settlements", tags=["address"])
async def settlements(district: str, gw: Gw):
    return await gw.registration.settlements(district)


@anyone.get("/address/settlements/{settlement}/streets", tags=["address"])
async def streets(settlement: str, gw: Gw, q: Annotated[str, Query(max_length=100)] = ""):
    return await gw.registration.streets(settlement, q)


@anyone.post("/drafts", status_code=201, tags=["application"], summary="Start an application")
async def start(gw: Gw, body: Json = None):
    return await gw.registration.start_draft(str((body or {}).get("locale", "ky")))


@anyone.get("/drafts/{draft}", tags=["application"], summary="The draft (not found once submitted)")
async def draft(draft: str, gw: Gw):
    found = await gw.registration.draft(draft)
    if found is None:
        raise c.NotYours("draft")
    return found


@anyone.put("/drafts/{draft}/child", tags=["application"], summary="Step 1: the child")
async def child(draft: str, body: Json, gw: Gw):
    return await gw.registration.save_child(draft, body)


@anyone.put("/drafts/{draft}/parent", tags=["application"], summary="Step 2: parent, address, contacts")
async def parent_step(draft: str, body: Json, gw: Gw):
    return await gw.registration.save_parent(draft, body)


@anyone.post("/drafts/{draft}/email-code", status_code=202, tags=["application"], summary="Get code")
async def code(draft: str, gw: Gw, body: Json = None):
    return await gw.registration.request_code(draft, str((body or {}).get("locale", "ky")))


@anyone.post("/drafts/{draft}/email-code/verify", tags=["application"])
async def verify(draft: str, body: Json, gw: Gw):
    return await gw.registration.verify_code(draft, str(body.get("code", "")))


@anyone.get("/categories", tags=["application"], summary="The categories a parent may choose at step 3")
async def categories(gw: Gw):
    return await gw.categories()


@anyone.post("/drafts/{draft}/submit", status_code=201, tags=["application"], summary="Step 3: submit")
async def submit(draft: str, body: Json, gw: Gw):
    return await gw.registration.submit(draft, body)


@anyone.post("/activation", tags=["accounts"], summary="Set the password with the one-time link's token")
async def activate(body: Json, gw: Gw):
    return await gw.registration.activate(str(body.get("token", "")), str(body.get("password", "")))


@anyone.post("/activation/resend", status_code=202, tags=["accounts"],
             summary="Ask for an activation link by e-mail (the answer is the same whether or not "
                     "the address has an account)")
async def resend_activation(request: Request, body: Json, gw: Gw):
    wait = await activation_wait(request, gw)
    if wait:
        raise UpstreamError(429, [{"field": "request", "code": "rate_limited", "params": {"seconds": int(wait) + 1}}])
    await gw.registration.resend_activation(str(body.get("email", "")), body.get("locale"))
    return {"status": "accepted"}


@anyone.post("/sessions", status_code=201, tags=["accounts"],
             summary="Log in: a bearer token (wrong passwords are slowed, never locked: 429 with Retry-After)")
async def login(body: Json, gw: Gw):
    return await gw.registration.login(str(body.get("login", "")), str(body.get("password", "")), "bearer")


# --- the signed-in parent's own ----------------------------------------------------

PARENT_ONLY = allow(parent())
cabinet = APIRouter(prefix="/api/v1", dependencies=[PARENT_ONLY])


def the_parent(access: Access = PARENT_ONLY) -> Principal:
    return access.principal


Parent = Annotated[Principal, Depends(the_parent)]


@cabinet.delete("/sessions/current", status_code=204, tags=["accounts"], summary="Log out")
async def logout(request: Request, gw: Gw, who: Parent):
    secret = session_secret(request)
    gw.parents.forget(secret)
    await gw.registration.logout(who, secret)
    return Response(status_code=204)


@cabinet.get("/me", tags=["cabinet"], summary="Own data and children with queue status, positions, referrals")
async def me(gw: Gw, who: Parent):
    return await c.children(gw, who)


@cabinet.get("/me/notifications", tags=["cabinet"],
             summary="The parent's messages, each in the language of Accept-Language (or ?lang=)")
async def notifications(request: Request, gw: Gw, who: Parent):
    from services.gateway.errors import reader_language

    return await gw.notifications.inbox(who, reader_language(request, gw))


@cabinet.post("/me/notifications/{message_id}/read", status_code=204, tags=["cabinet"],
              summary="Mark a notification as read")
async def notification_read(message_id: str, gw: Gw, who: Parent):
    await gw.notifications.mark_read(who, message_id)
    return Response(status_code=204)


@cabinet.get("/me/kindergartens-nearby", tags=["cabinet"], summary="Kindergartens near the address, nearest first")
async def kindergartens_nearby(gw: Gw, who: Parent, application_id: str | None = None, limit: int = 10):
    me = await gw.registration.me(who)
    apps = [a for a in me["applications"] if application_id in (None, a["id"])]
    if not apps:
        raise c.NotYours("application")
    addr = apps[0]["address"]
    return nearest(await gw.kindergartens(), addr.get("lat"), addr.get("lon"), max(1, min(limit, 50)))


@cabinet.post("/me/referrals/{referral_id}/cancel", tags=["cabinet"], summary="Cancel direction")
async def cancel(referral_id: str, gw: Gw, who: Parent):
    return await c.act_on_referral(gw, who, referral_id, "cancel")


@cabinet.post("/me/referrals/{referral_id}/extend", tags=["cabinet"], summary="Extend direction")
async def extend(referral_id: str, gw: Gw, who: Parent):
    return await c.act_on_referral(gw, who, referral_id, "extend")


@cabinet.post("/me/applications/{application_id}/remove", tags=["cabinet"], summary="Remove from queue")
async def remove(application_id: str, gw: Gw, who: Parent):
    await c.remove_application(gw, who, application_id)
    return {"status": "removed"}


@cabinet.get("/me/data", tags=["cabinet"],
             summary="Everything Kezek holds about the family (the family's own copy), from every service")
async def family_data(gw: Gw, who: Parent):
    return await family.copy(gw, who)


@cabinet.post("/me/applications/{application_id}/erasure", tags=["cabinet"],
              summary="Erase a closed application: granted, or 409 with the legal reason to keep it")
async def erasure(application_id: str, gw: Gw, who: Parent):
    await c.own_application(gw, who, application_id)
    return await family.erase(gw, who, application_id)


routers = (anyone, cabinet)
