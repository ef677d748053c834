"""What every staff page route depends on: its permission (the skeleton's
one dependency, kezek.trust.allow, with the grants read from the domain's
table of roles), the member of staff behind the session cookie (this app's
authenticator), the form checked against the session's CSRF token and for
characters no text may hold, and the page renderer in the reader's language.
Refusals and outages become pages here, in one place."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from kezek import trust
from kezek.problems import InvalidInput, Problem, TooLarge, of_status, problem_response
from kezek.web import database_problem
from services.verification import domain as d
from services.verification.bootstrap import Verification
from services.verification.i18n import Pages, pick_language
from services.verification.usecases.context import Forbidden, NotFound, StaffView, Unauthenticated
from services.verification.usecases.desk import QueueUnavailable
from workflows.client import ReferralNotStarted, ReferralUnavailable

COOKIE = "kezek_staff"
LANG_COOKIE = "kezek_lang"
FORM_BYTES = 64 * 1024        # every form but the certificate's, which carries a scan


class CsrfFailed(Exception):
    pass


# ------------------------------------------------------------ who may

_SCOPES = {d.Scope.KINDERGARTEN: trust.KINDERGARTEN, d.Scope.DISTRICT: trust.DISTRICT, d.Scope.ALL: trust.ANY}


def _grant(role: d.Role) -> trust.Grant:
    return trust.Grant(role.value, _SCOPES[d.SCOPES[role]])


def requires(permission: d.Permission) -> Any:
    """The route's permission: every role the domain gives `permission`,
    in its scope (its kindergarten, its district, or all of them). A route
    that takes it as `access: trust.Access = requires(...)` keeps a record
    within the scope with `access.check(kindergarten=..., district=...)`."""
    return trust.allow(*(_grant(r) for r in d.Role if d.can(r, permission)))


SIGNED_IN = trust.allow(*(_grant(r) for r in d.Role))      # any member of staff
PUBLIC = trust.PUBLIC


def staff_session(request: Request) -> trust.Principal | None:
    """This app's authenticator: the staff session cookie."""
    token = request.cookies.get(COOKIE)
    try:
        staff = request.app.state.service.staff.identify(token)
    except Unauthenticated:
        return None
    request.state.staff, request.state.token = staff, token
    return staff.principal


# ------------------------------------------------------------ dependencies

def service_of(request: Request) -> Verification:
    return request.app.state.service


Service = Annotated[Verification, Depends(service_of)]


async def current_staff(request: Request) -> StaffView:
    await trust.authenticate(request)          # cached: the permission asked it first
    staff = getattr(request.state, "staff", None)
    if staff is None:
        raise trust.Unauthenticated()
    return staff


CurrentStaff = Annotated[StaffView, Depends(current_staff)]


def check_text(name: str, value: str) -> None:
    """No text a person types holds control characters (PostgreSQL cannot
    even store a NUL): refused, naming the field."""
    if any(ord(ch) < 0x20 and ch not in "\t\r\n" or ord(ch) == 0x7F for ch in value):
        raise InvalidInput("invalid_characters", field=name[:40])


def clean_query(request: Request) -> None:
    """App-wide: the same for every query parameter."""
    for name, value in request.query_params.multi_items():
        check_text(name, name)
        check_text(name, value)


async def read_form(request: Request, *, limit: int = FORM_BYTES, max_files: int = 0) -> FormData:
    """The form, refused unread when its declared length is over `limit`
    (the skeleton's body limit cuts off one that lies about it)."""
    length = request.headers.get("content-length") or "0"
    if not length.isdigit() or int(length) > limit:
        raise TooLarge(field="scan" if max_files else None, params={"limit": limit})
    form = await request.form(max_files=max_files, max_fields=40)
    for name, value in form.multi_items():
        check_text(name, name)
        if not isinstance(value, UploadFile):
            check_text(name, value)
    return form


async def checked_form(request: Request, service: Service, _staff: CurrentStaff) -> FormData:
    """The form of a signed-in member of staff, sent with the session's CSRF token."""
    return await _with_csrf(request, service, await read_form(request))


async def _with_csrf(request: Request, service: Verification, form: FormData) -> FormData:
    if not service.staff.check_csrf(getattr(request.state, "token", None), str(form.get("csrf") or "")):
        raise CsrfFailed()
    return form


async def scan_form(request: Request, service: Service, _staff: CurrentStaff) -> FormData:
    """The certificate's form with its scan; a body far over the scan limit
    is refused before it is read."""
    limit = 2 * service.policy.max_scan_bytes + 1024 * 1024
    return await _with_csrf(request, service, await read_form(request, limit=limit, max_files=1))


CheckedForm = Annotated[FormData, Depends(checked_form)]
ScanForm = Annotated[FormData, Depends(scan_form)]


def client_address(request: Request) -> str:
    """The caller's address; behind a trusted reverse proxy, the last
    address it saw in X-Forwarded-For (what the caller itself sent before it
    is not believed)."""
    peer = request.client.host if request.client else ""
    if peer in request.app.state.trusted_proxies:
        forwarded = [a.strip() for a in request.headers.get("x-forwarded-for", "").split(",") if a.strip()]
        for address in reversed(forwarded):
            if address not in request.app.state.trusted_proxies:
                return address[:100]
    return peer


def safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def errors_of(exc: d.Refused) -> list[dict]:
    return [e.as_dict() for e in exc.errors]


async def acted(act: Callable[[], Any], done: str, refused: Callable[[list[dict]], Any]) -> Response:
    """A form's act: done, a redirect (303) to `done`; refused, the form's
    page again, made by `refused` from the refusal's errors."""
    try:
        result = act()
        if inspect.isawaitable(result):
            await result
    except d.Refused as exc:
        page = refused(errors_of(exc))
        return await page if inspect.isawaitable(page) else page
    return RedirectResponse(done, status_code=303)


# ------------------------------------------------------------ rendering

@dataclass
class Page:
    """Renders a template in the reader's language, with the session's
    member of staff and CSRF token when there is one."""

    request: Request
    service: Verification
    pages: Pages

    @property
    def lang(self) -> str:
        staff: StaffView | None = getattr(self.request.state, "staff", None)
        return pick_language(None, self.request.cookies.get(LANG_COOKIE), staff.locale if staff else None)

    def __call__(self, template: str, *, status: int = 200, headers: dict[str, str] | None = None,
                 **ctx) -> HTMLResponse:
        request = self.request
        staff: StaffView | None = getattr(request.state, "staff", None)
        token = getattr(request.state, "token", None)
        ctx.setdefault("errors", [])
        ctx.setdefault("section", "")
        html = self.pages.render(self.lang, template, staff=staff,
                                 csrf=self.service.staff.csrf_token(token) if token else "",
                                 path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
                                 **ctx)
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, kind: str, status: int, *, back: str = "/", headers: dict[str, str] | None = None,
              **ctx) -> HTMLResponse:
        max_mb = f"{self.service.policy.max_scan_bytes / (1024 * 1024):g}"
        ctx.setdefault("errors", [])
        return self("error.html", status=status, headers=headers, kind=kind, back=back, max_mb=max_mb, **ctx)


def page_of(request: Request) -> Page:
    return Page(request, request.app.state.service, request.app.state.pages)


Render = Annotated[Page, Depends(page_of)]


# ------------------------------------------------------------ refusals as pages

_KIND_OF_STATUS = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "wrong_method",
                   413: "too_large", 422: "bad_request", 429: "rate_limited", 503: "unavailable"}


def _parent(request: Request) -> str:
    return request.url.path.rsplit("/", 1)[0] or "/"


def problem_page(request: Request, problem: Problem) -> Response:
    """A problem of the skeleton (kezek.problems, kezek.trust) as a page:
    no session sends a person to the login page, the rest is an error page
    in their language with the problem's status and headers. Under /api/
    (the one internal route, api/family.py) a caller is a service: it gets
    the skeleton's JSON problem details, as every other service answers."""
    if _is_api(request):
        return problem_response(problem, request.url.path)
    if isinstance(problem, trust.Unauthenticated):
        return to_login(request)
    kind = _KIND_OF_STATUS.get(problem.status, "error")
    if kind == "unavailable":
        kind = "database"          # the skeleton's outage is the database's (Temporal's is ReferralUnavailable)
    elif kind == "too_large" and problem.field != "scan":
        kind = "form_too_large"
    errors = [e for e in problem.errors() if e["field"] != "scan"]
    return page_of(request).error(kind, problem.status, back=_parent(request), headers=problem.headers or None,
                                  errors=errors)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path if request.method == "GET" else "/"
    return RedirectResponse(f"/login?next={target}", status_code=303)


def install_error_pages(app: FastAPI) -> None:
    """The refusals of the skeleton and of the use cases, and the outages,
    as pages (the skeleton answers JSON problem details by default)."""

    @app.exception_handler(trust.Forbidden)
    async def wrong_role(request: Request, exc: trust.Forbidden):
        staff = getattr(request.state, "staff", None)
        if staff is not None:
            route = request.scope.get("route")
            app.state.service.audit_denied(staff, getattr(route, "path", request.url.path)[:100])
        return problem_page(request, exc)

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem):
        return problem_page(request, exc)

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def database(request: Request, exc: sa_exc.SQLAlchemyError):
        return problem_page(request, database_problem(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # The router's own 404 is an address with no page, not a record out of reach.
        if _is_api(request):
            return problem_response(of_status(exc.status_code, str(exc.detail), getattr(exc, "headers", None)),
                                    request.url.path)
        kind = "no_page" if exc.status_code == 404 else _KIND_OF_STATUS.get(exc.status_code, "error")
        return page_of(request).error(kind, exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        # Starlette logs and re-raises it after this answer; the page names
        # the request id to quote.
        return page_of(request).error("internal", 500, reference=getattr(request.state, "request_id", None))

    @app.exception_handler(Unauthenticated)
    async def no_session(request: Request, _exc: Unauthenticated):
        return to_login(request)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, _exc: NotFound):
        path = request.url.path
        kind = "not_found_here" if path.startswith(("/kindergarten", "/district")) else "not_found"
        return page_of(request).error(kind, 404)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _exc: Forbidden):
        return page_of(request).error("forbidden", 403)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, _exc: CsrfFailed):
        return page_of(request).error("csrf", 403)

    @app.exception_handler(ReferralUnavailable)
    async def unavailable(request: Request, exc: ReferralUnavailable):
        if isinstance(exc, ReferralNotStarted):
            # Issued moments ago: its workflow is still to be started.
            return page_of(request).error("referral_not_started", 503, back=_parent(request),
                                          headers={"Retry-After": str(exc.retry_after)})
        return page_of(request).error("unavailable", 503, back=_parent(request), headers={"Retry-After": "30"})

    @app.exception_handler(QueueUnavailable)
    async def queue_unavailable(request: Request, _exc: QueueUnavailable):
        return page_of(request).error("queue_unavailable", 503, back=_parent(request), headers={"Retry-After": "30"})
