"""How the gateway answers what went wrong, in the reader's language: the
JSON API with RFC 9457 problem details whose messages are translated
(`errors[].message` is "Label: message"), the portal with a page in its
layout (an unknown address, a wrong method, bad query parameters, too many
requests, an outage, a bug: 404, 405, 422, 429, 503, 500). A refusal of a
service keeps its status and fields; an outage of a service or of Temporal
is 503 with Retry-After, never a 500. A page that needs a signed-in parent
sends an anonymous visitor to the login page."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from kezek.contracts.registration import step_fields
from kezek.logging import get_logger
from kezek.problems import (PROBLEM_JSON, RETRY_AFTER_OUTAGE, Forbidden, Problem, Unauthenticated, field_errors,
                            of_status)
from kezek.web import database_problem
from services.gateway import i18n
from services.gateway.clients import UpstreamError
from services.gateway.context import Gateway
from services.gateway.messages import describe
from services.gateway.portal.pages import LANG_COOKIE, Page, Redirect, errors_of, redirect, status_of
from services.gateway.sessions import SESSION_COOKIE

log = get_logger(__name__)

def is_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


def reader_language(request: Request, gw: Gateway) -> str:
    return i18n.pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE),
                              request.headers.get("accept-language"), gw.settings.country)


def problem(status: int, errors: list[dict], headers: dict | None = None, instance: str = "") -> JSONResponse:
    """Problem details whose errors are already described (messages.describe)."""
    code = errors[0]["code"] if errors and errors[0].get("code") else "refused"
    body = {"type": f"urn:kezek:problem:{code}", "title": of_status(status).title, "status": status,
            "code": code, "detail": "; ".join(e["text"] for e in errors),
            "errors": [{"field": e["field"], "code": e["code"], "message": e["text"], "params": e.get("params", {})}
                       for e in errors]}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def answer(request: Request, status: int, errors: list[dict], headers: dict | None = None) -> Response:
    if is_page(request):
        return error_page(request, status, errors, headers)
    return problem(status, errors, headers, request.url.path)


def error_page(request: Request, status: int, errors: list[dict] | None = None,
               headers: dict | None = None) -> Response:
    """The portal's error page: the layout, the reader's language, what
    happened in words for the status, and the request id to quote."""
    gw: Gateway = request.app.state.gateway
    reference = getattr(request.state, "request_id", None)
    page = Page(request, gw, reader_language(request, gw))("error.html", status, errors or [], http_status=status,
                                                           reference=reference)
    page.headers.update(headers or {})
    return page


def too_many(request: Request, retry_after: float) -> Response:
    gw: Gateway = request.app.state.gateway
    errors = [describe({"field": "request", "code": "rate_limited"}, gw.gettext(reader_language(request, gw)))]
    return answer(request, 429, errors, {"Retry-After": str(max(1, int(retry_after + 0.999)))})


async def upstream_answer(request: Request, exc: UpstreamError) -> Response:
    gw: Gateway = request.app.state.gateway
    status = status_of(exc)
    if status == 401 and is_page(request):
        return to_login()
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status in (429, 503):
        seconds = next((e.get("params", {}).get("seconds") for e in exc.errors
                        if e.get("params", {}).get("seconds")), None)
        headers = {"Retry-After": str(seconds or (60 if status == 429 else RETRY_AFTER_OUTAGE))}
    return answer(request, status, errors_of(exc, gw.gettext(reader_language(request, gw)), gw.settings.country),
                  headers)


REGISTRATION_BODIES = ("/api/v1/drafts", "/api/v1/activation", "/api/v1/sessions")


def install(app: FastAPI) -> None:
    app.add_exception_handler(UpstreamError, upstream_answer)
    skeleton = dict(app.exception_handlers)     # kezek.web's problem details, kept for the JSON API

    def pages_or_problems(kind):
        fallback = skeleton[kind]

        def decorate(on_page):
            async def handler(request: Request, exc):
                if not is_page(request):
                    return await fallback(request, exc)
                return on_page(request, exc)

            app.add_exception_handler(kind, handler)
            return on_page
        return decorate

    @pages_or_problems(StarletteHTTPException)
    def http_error(request: Request, exc: StarletteHTTPException):
        return error_page(request, exc.status_code, headers=getattr(exc, "headers", None))

    invalid_input = skeleton[RequestValidationError]

    async def invalid_body(request: Request, exc: RequestValidationError):
        # The application's and the accounts' bodies are registration's
        # (kezek/contracts/registration.py): refused here as registration
        # refuses them, field for field, in the reader's language.
        route = getattr(request.scope.get("route"), "path", "")
        if is_page(request) or not route.startswith(REGISTRATION_BODIES):
            return await invalid_input(request, exc)
        return await upstream_answer(request, UpstreamError(422, step_fields(route, field_errors(exc))))

    skeleton[RequestValidationError] = invalid_body

    @pages_or_problems(RequestValidationError)
    def invalid_query(request: Request, _exc: RequestValidationError):
        # A page's address with a query it cannot read (?new=x): the page does not exist as asked.
        return error_page(request, 404)

    @pages_or_problems(Problem)
    def skeleton_problem(request: Request, exc: Problem):
        return error_page(request, exc.status, headers=exc.headers or None)

    @pages_or_problems(sa_exc.SQLAlchemyError)
    def database(request: Request, exc: sa_exc.SQLAlchemyError):
        found = database_problem(exc)
        return error_page(request, found.status, headers=found.headers or None)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        # Starlette logs and re-raises it after this answer; the reader gets
        # a page (or problem details) with the request id to quote.
        log.error("gateway.unhandled", error=repr(exc)[:300], path=request.url.path)
        if is_page(request):
            return error_page(request, 500)
        return await skeleton[Exception](request, exc)

    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, exc: Unauthenticated):
        gw: Gateway = request.app.state.gateway
        if is_page(request):
            return to_login()
        errors = [describe({"field": "session", "code": "session_invalid"},
                           gw.gettext(reader_language(request, gw)))]
        return problem(401, errors, {"WWW-Authenticate": "Bearer"}, request.url.path)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        gw: Gateway = request.app.state.gateway
        errors = [describe({"field": "request", "code": "forbidden"}, gw.gettext(reader_language(request, gw)))]
        return answer(request, 403, errors)

    @app.exception_handler(Redirect)
    async def redirected(_request: Request, exc: Redirect):
        return redirect(exc.url)


def to_login() -> Response:
    resp = redirect("/login")
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp
