"""The parents' JSON API (/api/v1), for a mobile app: the application steps
and sign-in are open to anyone; the cabinet is the signed-in parent's
(`Authorization: Bearer <token>` from POST /api/v1/sessions). Errors are
problem details with each field's message in the caller's language
(Accept-Language)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from kezek.contracts import registration as reg
from kezek.contracts.family import Erasure, FamilyCopy
from kezek.trust import PUBLIC, Access, Principal, allow, parent
from services.gateway import apimodels as m
from services.gateway import cabinet as c
from services.gateway import family
from services.gateway.clients import UpstreamError
from services.gateway.context import Gateway
from services.gateway.geo import nearest
from services.gateway.limits import activation_wait
from services.gateway.sessions import session_secret

Category = Annotated[str, Field(examples=["general"])]
KEEP = {"response_model_exclude_unset": True}   # registration's answers keep their shape


async def get_gateway(request: Request) -> Gateway:
    # async: FastAPI runs a plain function in the thread pool, a hop to a
    # worker thread and back per request for an attribute read.
    return request.app.state.gateway


Gw = Annotated[Gateway, Depends(get_gateway)]

# --- open to anyone: the application and signing in ----------------------------

anyone = APIRouter(prefix="/api/v1", dependencies=[PUBLIC])


@anyone.get("/address/regions", tags=["address"], response_model=list[reg.Place], **KEEP)
async def regions(gw: Gw):
    return await gw.registration.regions()


@anyone.get("/address/regions/{region}/districts", tags=["address"], response_model=list[reg.Place], **KEEP)
async def districts(region: str, gw: Gw):
    return await gw.registration.districts(region)


@anyone.get("/address/districts/{district}/settlements", tags=["address"], response_model=list[reg.Place], **KEEP)
async def settlements(district: str, gw: Gw):
    return await gw.registration.settlements(district)


@anyone.get("/address/settlements/{settlement}/streets", tags=["address"], response_model=list[reg.Place], **KEEP)
async def streets(settlement: str, gw: Gw, q: Annotated[str, Query(max_length=100)] = ""):
    return await gw.registration.streets(settlement, q)


@anyone.post("/drafts", status_code=201, tags=["application"], summary="Start an application",
             response_model=reg.NewDraft, **KEEP)
async def start(gw: Gw, body: reg.DraftIn | None = None):
    return await gw.registration.start_draft(body.locale if body else "ky")


@anyone.get("/drafts/{draft}", tags=["application"], summary="The draft (not found once submitted)",
            response_model=reg.Draft, **KEEP)
async def draft(draft: str, gw: Gw):
    found = await gw.registration.draft(draft)
    if found is None:
        raise c.NotYours("draft")
    return found


@anyone.put("/drafts/{draft}/child", tags=["application"], summary="Step 1: the child",
            response_model=reg.Draft, **KEEP)
async def child(draft: str, body: reg.ChildIn, gw: Gw):
    return await gw.registration.save_child(draft, body.model_dump(exclude_unset=True))


@anyone.put("/drafts/{draft}/parent", tags=["application"], summary="Step 2: parent, address, contacts",
            response_model=reg.Draft, **KEEP)
async def parent_step(draft: str, body: reg.ParentIn, gw: Gw):
    return await gw.registration.save_parent(draft, body.model_dump(exclude_unset=True))


@anyone.post("/drafts/{draft}/email-code", status_code=202, tags=["application"],
             summary="Send a six-digit code to the e-mail of step 2", response_model=reg.CodeSent, **KEEP)
async def code(draft: str, gw: Gw, body: reg.CodeIn | None = None):
    return await gw.registration.request_code(draft, (body.locale if body else None) or "ky")


@anyone.post("/drafts/{draft}/email-code/verify", tags=["application"], summary="Prove the e-mail with its code",
             response_model=reg.Draft, **KEEP)
async def verify(draft: str, body: reg.CodeIn, gw: Gw):
    return await gw.registration.verify_code(draft, body.code)


@anyone.get("/categories", tags=["application"], summary="The categories a parent may choose at step 3",
            response_model=list[Category])
async def categories(gw: Gw):
    return await gw.categories()


@anyone.post("/drafts/{draft}/submit", status_code=201, tags=["application"], summary="Step 3: submit",
             response_model=reg.SubmittedApplication, **KEEP)
async def submit(draft: str, body: reg.ConfirmIn, gw: Gw, request: Request):
    done = await gw.registration.submit(draft, body.model_dump(exclude_unset=True))
    await c.submitted(gw, request)
    return done


@anyone.post("/activation", tags=["accounts"], summary="Set the password with the one-time link's token",
             response_model=reg.Activated, **KEEP)
async def activate(body: reg.ActivateIn, gw: Gw):
    return await gw.registration.activate(body.token, body.password)


@anyone.post("/activation/resend", status_code=202, tags=["accounts"],
             summary="Ask for an activation link by e-mail (the answer is the same whether or not "
                     "the address has an account)", response_model=reg.Accepted)
async def resend_activation(request: Request, body: reg.EmailIn, gw: Gw):
    wait = await activation_wait(request, gw)
    if wait:
        raise UpstreamError(429, [{"field": "request", "code": "rate_limited", "params": {"seconds": int(wait) + 1}}])
    await gw.registration.resend_activation(body.email, body.locale)
    return {"status": "accepted"}


@anyone.post("/sessions", status_code=201, tags=["accounts"],
             summary="Log in: a bearer token (wrong passwords are slowed, never locked: 429 with Retry-After)",
             response_model=reg.Session, **KEEP)
async def login(body: reg.LoginIn, gw: Gw):
    return await gw.registration.login(body.login, body.password, "bearer")


# --- the signed-in parent's own ----------------------------------------------------

PARENT_ONLY = allow(parent(), scheme=m.PARENT_SESSION)
cabinet = APIRouter(prefix="/api/v1", dependencies=[PARENT_ONLY])


async def the_parent(access: Access = PARENT_ONLY) -> Principal:
    return access.principal


Parent = Annotated[Principal, Depends(the_parent)]


@cabinet.delete("/sessions/current", status_code=204, tags=["accounts"], summary="Log out")
async def logout(request: Request, gw: Gw, who: Parent):
    secret = session_secret(request)
    gw.parents.forget(secret)
    await gw.registration.logout(who, secret)
    return Response(status_code=204)


@cabinet.get("/me", tags=["cabinet"], summary="Own data and children with queue status, positions, referrals",
             response_model=m.Cabinet, **KEEP)
async def me(gw: Gw, who: Parent):
    # The answer's bytes, made once per copy of the read model (cabinet.answer).
    return Response(await c.answer(gw, who), media_type="application/json")


@cabinet.get("/me/notifications", tags=["cabinet"],
             summary="The parent's messages, newest first, each in the language of Accept-Language (or ?lang=)",
             response_model=list[m.InboxMessage], **KEEP)
async def notifications(request: Request, gw: Gw, who: Parent):
    from services.gateway.errors import reader_language

    return await gw.notifications.inbox(who, reader_language(request, gw))


@cabinet.post("/me/notifications/{message_id}/read", status_code=204, tags=["cabinet"],
              summary="Mark a notification as read")
async def notification_read(message_id: str, gw: Gw, who: Parent):
    await gw.notifications.mark_read(who, message_id)
    return Response(status_code=204)


@cabinet.get("/me/kindergartens-nearby", tags=["cabinet"], summary="Kindergartens near the address, nearest first",
             response_model=list[m.NearbyKindergarten], **KEEP)
async def kindergartens_nearby(gw: Gw, who: Parent, application_id: Annotated[str | None, Query(max_length=100)] = None,
                               limit: Annotated[int, Query(description="at most 50")] = 10):
    me = await gw.registration.me(who)
    apps = [a for a in me["applications"] if application_id in (None, a["id"])]
    if not apps:
        raise c.NotYours("application")
    addr = apps[0]["address"]
    return nearest(await gw.kindergartens(), addr.get("lat"), addr.get("lon"), max(1, min(limit, 50)))


@cabinet.post("/me/referrals/{referral_id}/cancel", tags=["cabinet"], summary="Cancel direction",
              response_model=m.ReferralActed, **KEEP)
async def cancel(referral_id: str, gw: Gw, who: Parent):
    return await c.act_on_referral(gw, who, referral_id, "cancel")


@cabinet.post("/me/referrals/{referral_id}/extend", tags=["cabinet"], summary="Extend direction",
              response_model=m.ReferralActed, **KEEP)
async def extend(referral_id: str, gw: Gw, who: Parent):
    return await c.act_on_referral(gw, who, referral_id, "extend")


@cabinet.post("/me/applications/{application_id}/remove", tags=["cabinet"], summary="Remove from queue",
              response_model=m.Removed)
async def remove(application_id: str, gw: Gw, who: Parent):
    await c.remove_application(gw, who, application_id)
    return {"status": "removed"}


@cabinet.get("/me/data", tags=["cabinet"],
             summary="Everything Kezek holds about the family (the family's own copy), from every service",
             response_model=FamilyCopy, **KEEP)
async def family_data(gw: Gw, who: Parent):
    return await family.copy(gw, who)


@cabinet.post("/me/applications/{application_id}/erasure", tags=["cabinet"],
              summary="Erase a closed application: granted, or 409 with the legal reason to keep it",
              response_model=Erasure)
async def erasure(application_id: str, gw: Gw, who: Parent):
    await c.own_application(gw, who, application_id)
    return await family.erase(gw, who, application_id)


routers = (anyone, cabinet)
