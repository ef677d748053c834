"""What every staff page route depends on: the service, the member of staff
behind the session cookie, the form checked against the session's CSRF
token, and the page renderer in the reader's language. Errors of the use
cases become pages here, in one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.datastructures import FormData

from services.verification import domain as d
from services.verification.bootstrap import Verification
from services.verification.i18n import Pages, pick_language
from services.verification.usecases.context import Forbidden, NotFound, StaffView, Unauthenticated
from workflows.client import ReferralUnavailable

COOKIE = "kezek_staff"
LANG_COOKIE = "kezek_lang"


class CsrfFailed(Exception):
    pass


class TooLarge(Exception):
    """A body far over its limit, refused before it is read."""


def service_of(request: Request) -> Verification:
    return request.app.state.service


Service = Annotated[Verification, Depends(service_of)]


def current_staff(request: Request, service: Service) -> StaffView:
    token = request.cookies.get(COOKIE)
    staff = service.staff.identify(token)
    request.state.staff, request.state.token = staff, token
    return staff


CurrentStaff = Annotated[StaffView, Depends(current_staff)]


async def checked_form(request: Request, service: Service, _staff: CurrentStaff) -> FormData:
    """The form of a signed-in member of staff, sent with the session's CSRF token."""
    form = await request.form(max_files=1, max_fields=40)
    if not service.staff.check_csrf(getattr(request.state, "token", None), form.get("csrf")):
        raise CsrfFailed()
    return form


CheckedForm = Annotated[FormData, Depends(checked_form)]


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

    def __call__(self, template: str, *, status: int = 200, **ctx) -> HTMLResponse:
        request = self.request
        staff: StaffView | None = getattr(request.state, "staff", None)
        token = getattr(request.state, "token", None)
        ctx.setdefault("errors", [])
        ctx.setdefault("section", "")
        html = self.pages.render(self.lang, template, staff=staff,
                                 csrf=self.service.staff.csrf_token(token) if token else "",
                                 path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
                                 **ctx)
        return HTMLResponse(html, status_code=status)

    def error(self, kind: str, status: int, *, back: str = "/", **ctx) -> HTMLResponse:
        max_mb = f"{self.service.policy.max_scan_bytes / (1024 * 1024):g}"
        return self("error.html", status=status, kind=kind, back=back, max_mb=max_mb, **ctx)


def page_of(request: Request) -> Page:
    return Page(request, request.app.state.service, request.app.state.pages)


Render = Annotated[Page, Depends(page_of)]


def install_error_pages(app: FastAPI) -> None:
    """The use cases' refusals of access, and the outages, as pages."""

    @app.exception_handler(Unauthenticated)
    async def to_login(request: Request, _exc: Unauthenticated):
        target = request.url.path if request.method == "GET" else "/"
        return RedirectResponse(f"/login?next={target}", status_code=303)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, _exc: NotFound):
        return page_of(request).error("not_found", 404)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _exc: Forbidden):
        return page_of(request).error("forbidden", 403)

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, _exc: CsrfFailed):
        return page_of(request).error("csrf", 403)

    @app.exception_handler(TooLarge)
    async def too_large(request: Request, _exc: TooLarge):
        return page_of(request).error("too_large", 413, back=request.url.path.rsplit("/", 1)[0])

    @app.exception_handler(ReferralUnavailable)
    async def unavailable(request: Request, _exc: ReferralUnavailable):
        return page_of(request).error("unavailable", 503, back=request.url.path.rsplit("/", 1)[0])
