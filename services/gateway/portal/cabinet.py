"""The personal cabinet (DOMAIN.md section 2 point 8): the signed-in parent's
own data, children, queue positions, referrals with the buttons the rules
allow, notifications and the map. Every route is the verified parent's
(`allow(parent())`: an anonymous visitor goes to the login page); every form
carries a token derived from the session (CSRF); what is not the parent's
own is "not found" (services/gateway/cabinet.py)."""
from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from kezek.trust import Access, Principal, allow, parent
from services.gateway import cabinet as c
from services.gateway.charts import position_chart
from services.gateway.clients import UpstreamError
from services.gateway.geo import project, ring_radii
from services.gateway.portal.pages import Form, Gw, Redirect, Render, redirect
from services.gateway.sessions import SESSION_COOKIE

PARENT_ONLY = allow(parent())
router = APIRouter(include_in_schema=False, dependencies=[PARENT_ONLY])


async def the_parent(access: Access = PARENT_ONLY) -> Principal:
    return access.principal


Parent = Annotated[Principal, Depends(the_parent)]


async def session_csrf(request: Request, gw: Gw) -> str:
    return gw.csrf(request.cookies.get(SESSION_COOKIE, ""))


Csrf = Annotated[str, Depends(session_csrf)]


async def checked(request: Request, gw: Gw, form: Form) -> dict[str, str]:
    """The posted form, if it carries the session's CSRF token; else back to
    the cabinet, nothing changed."""
    if not gw.check_csrf(request.cookies.get(SESSION_COOKIE, ""), form.pop("csrf", "")):
        raise Redirect("/cabinet")
    return form


Checked = Annotated[dict[str, str], Depends(checked)]


async def target_id(request: Request) -> str:
    """The referral or application an act's path names (its one parameter)."""
    (value,) = request.path_params.values()
    return value


Target = Annotated[str, Depends(target_id)]


@router.get("/cabinet", response_class=HTMLResponse)
async def cabinet(render: Render, gw: Gw, who: Parent, csrf: Csrf, done: str = ""):
    me = await c.children(gw, who)
    for app in me["applications"]:
        app["chart"] = position_chart((app.get("queue") or {}).get("history") or [])
    inbox, inbox_ok = await c.inbox(gw, who, render.lang)
    home = next((a["address"] for a in me["applications"] if a.get("address", {}).get("lat")), None)
    kgs, kgs_ok = await gw.nearby(home["lat"], home["lon"], 10) if home else ([], True)
    map_ = None
    if home and kgs:
        centre, points, scale = project((home["lat"], home["lon"]), kgs)
        map_ = {"home": centre, "points": points, "rings": ring_radii(scale), "size": 320}
    return render("cabinet.html", me=me, inbox=inbox, inbox_ok=inbox_ok, kindergartens=kgs,
                  kindergartens_ok=kgs_ok, map=map_, csrf=csrf, done=done, home=home)


async def confirmation(render: Render, gw, who: Principal, kind: str, target_id: str, csrf: str,
                       exc: UpstreamError | None = None) -> HTMLResponse:
    """The page that asks before an act that cannot be undone ("cancel" a
    referral, "remove" an application), again with the refusal if it failed."""
    if kind == "remove":
        subject = {"application": await c.own_application(gw, who, target_id)}
    else:
        app, referral = await c.own_referral(gw, who, target_id, kind)
        subject = {"application": app, "referral": referral}
    page = dict(kind=kind, target_id=target_id, csrf=csrf, **subject)
    return render.refused("confirm_action.html", exc, **page) if exc else render("confirm_action.html", **page)


def confirmed_act(kind: str, path: str, act, done: str) -> None:
    """The two routes of an act that cannot be undone ("cancel" a referral,
    "remove" an application), the target named by the path's one parameter:
    GET asks before it (the confirmation page); POST does it, `act(gw, who,
    target_id)`, and goes to `done`, or shows the question again with why it
    was refused (what is not the parent's own, or not allowed now, is an
    error page)."""
    async def page(target_id: Target, render: Render, gw: Gw, who: Parent, csrf: Csrf):
        return await confirmation(render, gw, who, kind, target_id, csrf)

    async def post(target_id: Target, render: Render, gw: Gw, who: Parent, csrf: Csrf, _form: Checked):
        try:
            await act(gw, who, target_id)
        except (c.NotYours, c.NotAllowedNow):
            raise
        except UpstreamError as exc:
            return await confirmation(render, gw, who, kind, target_id, csrf, exc)
        return redirect(done)

    router.add_api_route(path, page, methods=["GET"], response_class=HTMLResponse, name=f"{kind}_page")
    router.add_api_route(path, post, methods=["POST"], response_class=HTMLResponse, name=f"{kind}_post")


# --- "Cancel direction", "Extend direction", "Remove from queue" ---------------------

confirmed_act("cancel", "/cabinet/referrals/{referral_id}/cancel",
              partial(c.act_on_referral, action="cancel"), "/cabinet?done=cancelled#directions")
confirmed_act("remove", "/cabinet/applications/{application_id}/remove", c.remove_application,
              "/cabinet?done=removed")


@router.post("/cabinet/referrals/{referral_id}/extend", response_class=HTMLResponse)
async def extend_post(referral_id: str, gw: Gw, who: Parent, _form: Checked):
    await c.act_on_referral(gw, who, referral_id, "extend")
    return redirect("/cabinet?done=extended#directions")


# --- notifications ------------------------------------------------------------------

@router.post("/cabinet/notifications/{message_id}/read", response_class=HTMLResponse)
async def notification_read(message_id: str, gw: Gw, who: Parent, _form: Checked):
    await gw.notifications.mark_read(who, message_id)
    return redirect("/cabinet#h-notes")
