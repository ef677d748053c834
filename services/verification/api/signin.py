"""Signing in and out, the language switch, and the home page that sends
each role to its first page."""
from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.verification import domain as d
from services.verification.api.pages import (
    COOKIE, LANG_COOKIE, PUBLIC, SIGNED_IN, CheckedForm, CurrentStaff, Render, Service, client_address, read_form,
    safe_next,
)
from services.verification.i18n import pick_language
from services.verification.usecases.context import Forbidden, Throttled, Unauthenticated

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
YEAR = 365 * 86400


FIRST_PAGES = ((d.Permission.WORKLIST, "/worklist"), (d.Permission.VOUCHER_VIEW, "/vouchers"),
               (d.Permission.KG_ENROL, "/kindergarten"), (d.Permission.DISTRICT_MANAGE, "/district"),
               (d.Permission.AUDIT_SEARCH, "/audit"))


@router.get("/", dependencies=[SIGNED_IN])
def home(staff: CurrentStaff):
    for permission, page in FIRST_PAGES:
        if staff.can(permission):
            return RedirectResponse(page, status_code=303)
    raise Forbidden("home")


@router.get("/login", dependencies=[PUBLIC])
def login_form(render: Render, next: str = "/"):
    return render("login.html", next=safe_next(next), login="")


@router.post("/login", dependencies=[PUBLIC])
async def login(request: Request, service: Service, render: Render):
    form = await read_form(request)
    login_, password = str(form.get("login") or ""), str(form.get("password") or "")
    target = safe_next(str(form.get("next") or "/"))
    try:
        token, staff = service.staff.login(login_, password, client_address(request))
    except Throttled as exc:
        page = render("login.html", status=429, next=target, login=login_,
                      errors=[{"field": "login", "code": exc.code, "params": {"seconds": exc.retry_after}}])
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except Unauthenticated as exc:
        return render("login.html", status=401, next=target, login=login_,
                      errors=[{"field": "login", "code": exc.code, "params": {}}])
    if service.staff.notice(token):
        # Wrong passwords were given for this account: its owner is told first.
        target = f"/login/notice?next={quote(target)}"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(d.SESSION_TTL.total_seconds()), httponly=True,
                        samesite="strict", secure=request.app.state.cookie_secure, path="/")
    if not request.cookies.get(LANG_COOKIE):
        response.set_cookie(LANG_COOKIE, staff.locale, max_age=YEAR, samesite="lax", path="/")
    return response


@router.get("/login/notice", dependencies=[SIGNED_IN])
def sign_in_notice(request: Request, render: Render, service: Service, _staff: CurrentStaff, next: str = "/"):
    notice = service.staff.notice(request.cookies.get(COOKIE))
    return render("login_notice.html", notice=notice, next=safe_next(next))


@router.post("/logout", dependencies=[SIGNED_IN])
async def logout(request: Request, service: Service, _form: CheckedForm):
    service.staff.logout(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/language", dependencies=[PUBLIC])
def language(to: str = "ru", next: str = "/"):
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, pick_language(to, None, None), max_age=YEAR, samesite="lax", path="/")
    return response
