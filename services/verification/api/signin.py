"""Signing in and out, the language switch, and the home page that sends
each role to its first page."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from services.verification import domain as d
from services.verification.api.pages import (
    COOKIE, LANG_COOKIE, CheckedForm, CurrentStaff, Render, Service, safe_next,
)
from services.verification.i18n import pick_language
from services.verification.usecases.context import Forbidden, Unauthenticated

router = APIRouter(include_in_schema=False)
YEAR = 365 * 86400


@router.get("/")
def home(staff: CurrentStaff):
    if staff.can(d.Permission.WORKLIST):
        return RedirectResponse("/worklist", status_code=303)
    if staff.can(d.Permission.VOUCHER_VIEW):
        return RedirectResponse("/vouchers", status_code=303)
    raise Forbidden("home")


@router.get("/login", response_class=HTMLResponse)
def login_form(render: Render, next: str = "/"):
    return render("login.html", next=safe_next(next), login="")


@router.post("/login")
async def login(request: Request, service: Service, render: Render):
    form = await request.form(max_files=0, max_fields=10)
    login_, password = str(form.get("login") or ""), str(form.get("password") or "")
    target = safe_next(str(form.get("next") or "/"))
    try:
        token, staff = service.staff.login(login_, password)
    except Unauthenticated as exc:
        status = 429 if exc.code == "login_locked" else 401
        return render("login.html", status=status, next=target, login=login_,
                      errors=[{"field": "login", "code": exc.code, "params": {}}])
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(d.SESSION_TTL.total_seconds()), httponly=True,
                        samesite="strict", secure=request.app.state.cookie_secure, path="/")
    if not request.cookies.get(LANG_COOKIE):
        response.set_cookie(LANG_COOKIE, staff.locale, max_age=YEAR, samesite="lax", path="/")
    return response


@router.post("/logout")
async def logout(request: Request, service: Service, _form: CheckedForm):
    service.staff.logout(request.cookies.get(COOKIE))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/language")
def language(to: str = "ru", next: str = "/"):
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(LANG_COOKIE, pick_language(to, None, None), max_age=YEAR, samesite="lax", path="/")
    return response
