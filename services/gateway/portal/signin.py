"""Signing in and out, the activation link, and single sign-on through the
national identity provider (Tunduk). The session lives in registration; the
portal keeps its secret in an HttpOnly cookie."""
from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from kezek.trust import PUBLIC, Access, allow, parent
from services.gateway.clients import UpstreamError
from services.gateway.limits import activation_wait
from services.gateway.portal.pages import Form, Gw, Lang, Render, redirect
from services.gateway.sessions import SESSION_COOKIE

router = APIRouter(include_in_schema=False)
public = [PUBLIC]
OIDC_COOKIE = "kezek_oidc"


def start_session(gw, token: str) -> RedirectResponse:
    resp = redirect("/cabinet")
    resp.set_cookie(SESSION_COOKIE, token, httponly=True, secure=gw.settings.cookie_secure, samesite="lax",
                    path="/", max_age=12 * 3600)
    return resp


# --- the activation link ---------------------------------------------------------

@router.get("/activate", response_class=HTMLResponse, dependencies=public)
async def activate_page(render: Render, gw: Gw, token: str = ""):
    try:
        found = await gw.registration.check_activation(token)
    except UpstreamError as exc:
        return render.refused("activate.html", exc, token=token, email=None)
    return render("activate.html", token=token, email=found["email"])


@router.post("/activate", response_class=HTMLResponse, dependencies=public)
async def activate_post(render: Render, gw: Gw, values: Form):
    token = values.get("token", "")
    if values.get("password", "") != values.get("password2", ""):
        errors = render.described({"field": "password2", "code": "password_mismatch"})
        return render("activate.html", 422, errors, token=token, email=values.get("email"))
    try:
        await gw.registration.activate(token, values.get("password", ""))
    except UpstreamError as exc:
        return render.refused("activate.html", exc, token=token, email=values.get("email"))
    return redirect("/login?activated=1")


# An account without a password (a parent moved from the old portal, or
# whose link expired) gets a link by e-mail. The page says the same
# whether or not the address has such an account.
@router.get("/activate/request", response_class=HTMLResponse, dependencies=public)
async def activation_request_page(render: Render):
    return render("activate_request.html", values={}, sent=False)


@router.post("/activate/request", response_class=HTMLResponse, dependencies=public)
async def activation_request_post(request: Request, render: Render, gw: Gw, lang: Lang, values: Form):
    email = values.get("email", "")
    wait = await activation_wait(request, gw)
    if wait:
        errors = render.described({"field": "request", "code": "rate_limited"})
        page = render("activate_request.html", 429, errors, values={"email": email}, sent=False)
        page.headers["Retry-After"] = str(int(wait) + 1)
        return page
    try:
        await gw.registration.resend_activation(email, lang)
    except UpstreamError as exc:
        return render.refused("activate_request.html", exc, values={"email": email}, sent=False)
    return render("activate_request.html", values={"email": email}, sent=True)


# --- signing in and out ---------------------------------------------------------

@router.get("/login", response_class=HTMLResponse, dependencies=public)
async def login_page(render: Render, activated: int = 0):
    return render("login.html", values={}, activated=bool(activated))


@router.post("/login", response_class=HTMLResponse, dependencies=public)
async def login_post(render: Render, gw: Gw, values: Form):
    try:
        found = await gw.registration.login(values.get("login", ""), values.get("password", ""), "cookie")
    except UpstreamError as exc:
        page = render.refused("login.html", exc, values={"login": values.get("login", "")}, activated=False)
        if exc.status == 429:
            seconds = next((e.get("params", {}).get("seconds") for e in exc.errors), None)
            page.headers["Retry-After"] = str(seconds or 60)
        return page
    return start_session(gw, found["token"])


@router.post("/logout")
async def logout(request: Request, gw: Gw, values: Form, access: Access = allow(parent())):
    token = request.cookies.get(SESSION_COOKIE, "")
    if gw.check_csrf(token, values.get("csrf", "")):
        gw.parents.forget(token)
        try:
            await gw.registration.logout(access.principal, token)
        except UpstreamError:
            pass
    resp = redirect("/")
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


# --- single sign-on ----------------------------------------------------------------

def callback_url(request: Request, gw) -> str:
    base = gw.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")
    return f"{base}/login/tunduk/callback"


@router.get("/login/tunduk", dependencies=public)
async def tunduk(request: Request, render: Render, gw: Gw):
    try:
        found = await gw.registration.sso_start(callback_url(request, gw))
    except UpstreamError as exc:
        return render.refused("login.html", exc, values={}, activated=False)
    # Bind the sign-in to this browser: the callback must come back here.
    state = found["authorize_url"].split("state=", 1)[1].split("&", 1)[0]
    resp = RedirectResponse(found["authorize_url"], status_code=303)
    resp.set_cookie(OIDC_COOKIE, gw.csrf("oidc" + state), httponly=True, secure=gw.settings.cookie_secure,
                    samesite="lax", max_age=600, path="/login/tunduk")
    return resp


@router.get("/login/tunduk/callback", response_class=HTMLResponse, dependencies=public)
async def tunduk_callback(request: Request, render: Render, gw: Gw, state: str = "", code: str = ""):
    if not secrets.compare_digest(request.cookies.get(OIDC_COOKIE, ""), gw.csrf("oidc" + state)):
        return render("login.html", 400, render.described({"field": "state", "code": "sso_failed"}),
                      values={}, activated=False)
    try:
        found = await gw.registration.sso_finish(state, code, "cookie")
    except UpstreamError as exc:
        return render.refused("login.html", exc, values={}, activated=False)
    resp = start_session(gw, found["token"])
    resp.delete_cookie(OIDC_COOKIE, path="/login/tunduk")
    return resp
