"""The one skeleton every service's HTTP app is built on.

`create_service_app` gives each app: request ids bound to the logs; /health
(alive), /ready (its dependencies answer) and /metrics (Prometheus), public by
design; its API documentation (Swagger UI at /docs, ReDoc at /redoc) served
with the assets of a package, so it opens without internet; the authenticator that `kezek.trust.allow` asks who is calling; a
size limit on request bodies (413 before anything is parsed); control
characters in a path refused (400); and one error shape, RFC 9457 problem
details (`kezek.problems`). Bad input is a 4xx naming the field, never a 500;
a database that does not answer is a 503 with Retry-After.
"""
from __future__ import annotations

import importlib.util
import time
import uuid
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Literal

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import exc as sa_exc
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kezek.logging import get_logger
from kezek.metrics import LATENCY, REQUESTS
from kezek.problems import (  # noqa: F401  (re-exported: the services' one import)
    PROBLEM_JSON, PROBLEM_RESPONSES, RETRY_AFTER_OUTAGE, DomainError, Internal, InvalidInput, NotFound, Problem,
    ProblemModel, TooLarge, TooManyRequests, Unavailable, field_errors, of_status, problem_response,
)
from kezek.trust import PUBLIC

log = get_logger(__name__)

ReadyCheck = Callable[[], None]  # raises when the dependency is not ready

DEFAULT_MAX_BODY = 1024 * 1024
# The documentation pages' scripts and styles, from a package (no CDN).
DOCS_ASSETS = str(Path(importlib.util.find_spec("fastapi_offline").origin).parent / "static")
_DB_OUTAGE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError, sa_exc.TimeoutError)


# --------------------------------------------------------------- middleware

class BodyLimit:
    """Refuses a body over `limit` bytes with 413 before the app reads it:
    by Content-Length when given, else while it streams in."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = TooLarge(params={"limit": self.limit}, detail=f"the body may have at most {self.limit} bytes")
        if declared is not None:
            try:
                if int(declared) > self.limit:
                    return await problem_response(too_large)(scope, receive, send)
            except ValueError:
                return await problem_response(Problem(detail="Content-Length is not a number"))(scope, receive, send)
        seen = 0
        exceeded = False
        answered = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Whatever the app makes of a cut body, the answer is 413.
                    exceeded = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if not exceeded:
                return await send(message)
            if not answered:
                answered = True
                await problem_response(too_large)(scope, receive, send)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not answered:
                await problem_response(too_large)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class RequestContext:
    """The request's id (the caller's `x-request-id` when it is sensible,
    else a new one) bound to the logs, kept on `request.state` and sent back;
    a control character in the path refused (400); the request counted and
    timed for /metrics. Plain ASGI: Starlette's BaseHTTPMiddleware runs the
    app in a task of its own with streams between them, a cost on every
    request."""

    def __init__(self, app: ASGIApp, service: str):
        self.app, self.service = app, service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        if not request_id or len(request_id) > 100 or not _path_is_clean(request_id):
            request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id   # for pages that name it (an error to quote)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, service=self.service)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            await send(message)

        if not _path_is_clean(scope.get("path", "")):
            response = problem_response(Problem("bad_path", detail="the path contains control characters"))
            await response(scope, receive, send_with_id)
        else:
            await self.app(scope, receive, send_with_id)
        path = getattr(scope.get("route"), "path", "unmatched")
        REQUESTS.labels(self.service, scope["method"], path, status).inc()
        LATENCY.labels(self.service, path).observe(time.perf_counter() - started)


def _probe(scope) -> bool:
    return scope.get("path") in ("/health", "/ready", "/metrics")


def _path_is_clean(path: str) -> bool:
    return not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path)


# --------------------------------------------------------------------- app

class Health(BaseModel):
    """The process answers."""
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "service": "queue"}]})
    status: Literal["ok"]
    service: str


class Ready(BaseModel):
    """Every server this service uses answers."""
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ready", "service": "gateway", "checks": ["database", "temporal"]}]})
    status: Literal["ready"]
    service: str
    checks: list[str]


class NotReady(BaseModel):
    """Which servers do not answer, and why."""
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "unavailable", "service": "gateway", "failed": {"temporal": "TimeoutError()"}}]})
    status: Literal["unavailable"]
    service: str
    failed: dict[str, str]


def create_service_app(service: str, *, title: str | None = None, version: str = "1.0.0",
                       ready_checks: Iterable[tuple[str, ReadyCheck]] = (),
                       authenticate: Callable | None = None, max_body_bytes: int = DEFAULT_MAX_BODY,
                       **fastapi_kwargs) -> FastAPI:
    """An app with the shared skeleton. `authenticate(request)` (sync or
    async) returns the verified `kezek.trust.Principal` or None; every route
    declares its permission with `kezek.trust.allow` or `PUBLIC`."""
    fastapi_kwargs.setdefault("responses", PROBLEM_RESPONSES)
    docs_url = fastapi_kwargs.pop("docs_url", "/docs")
    redoc_url = fastapi_kwargs.pop("redoc_url", "/redoc")
    # FastAPI's own OpenTelemetry: a server span per request under the
    # caller's traceparent (kezek.tracing); the probes make none.
    fastapi_kwargs.setdefault("telemetry", {"exclude": _probe})
    app = FastAPI(title=title or f"Kezek {service}", version=version, docs_url=None, redoc_url=None,
                  **fastapi_kwargs)
    offline_docs(app, docs_url, redoc_url)
    document_problems(app)
    app.state.ready_checks = list(ready_checks)
    app.state.authenticate = authenticate
    app.state.service_name = service
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(RequestContext, service=service)       # outermost of the two

    @app.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError):
        errors = field_errors(exc)
        problem = InvalidInput(detail="; ".join(e["message"] for e in errors) or "invalid input", errors=errors)
        return problem_response(problem, request.url.path)

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem):
        return problem_response(exc, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return problem_response(of_status(exc.status_code, str(exc.detail), getattr(exc, "headers", None)),
                                request.url.path)

    @app.exception_handler(sa_exc.SQLAlchemyError)
    async def database_error(request: Request, exc: sa_exc.SQLAlchemyError):
        return problem_response(database_problem(exc), request.url.path)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        # Starlette logs the exception and re-raises it after this answer.
        reference = getattr(request.state, "request_id", None)
        return problem_response(Internal(detail=f"internal error (request {reference})"), request.url.path)

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers", dependencies=[PUBLIC],
             response_model=Health)
    async def health():
        return {"status": "ok", "service": service}

    @app.get("/ready", tags=["operations"], summary="Readiness: every dependency answers", dependencies=[PUBLIC],
             response_model=Ready, responses={503: {"model": NotReady, "description": "A dependency does not answer "
                                                    "(see Retry-After)"}})
    def ready():
        failed = {}
        for name, check in app.state.ready_checks:
            try:
                check()
            except Exception as exc:
                failed[name] = repr(exc)
        if failed:
            return JSONResponse({"status": "unavailable", "service": service, "failed": failed}, status_code=503,
                                headers={"Retry-After": str(RETRY_AFTER_OUTAGE)})
        return {"status": "ready", "service": service, "checks": [n for n, _ in app.state.ready_checks]}

    @app.get("/metrics", tags=["operations"], include_in_schema=False, dependencies=[PUBLIC])
    def metrics():
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def document_problems(app: FastAPI) -> None:
    """Error answers documented under the media type they are sent with.
    FastAPI puts a response's model under `application/json` and leaves the
    declared `application/problem+json` empty; a client generated from the
    document would then find no schema for the problem it receives."""
    build = app.openapi

    def openapi() -> dict:
        spec = build()
        for path in spec.get("paths", {}).values():
            for operation in path.values():
                for answer in operation.get("responses", {}).values():
                    content = answer.get("content", {})
                    if "schema" not in content.get(PROBLEM_JSON, {"schema": None}) and "application/json" in content:
                        content[PROBLEM_JSON] = content.pop("application/json")
        return spec

    app.openapi = openapi


def offline_docs(app: FastAPI, docs_url: str | None, redoc_url: str | None) -> None:
    """Swagger UI at `docs_url` and ReDoc at `redoc_url` with their scripts
    and styles from the fastapi-offline package (Swagger UI 5, which reads
    FastAPI's OpenAPI 3.1, and ReDoc 2), served under `<docs_url>/assets`:
    no CDN, no web fonts. The pages' own inline script needs a CSP exception
    where an app sets one (the gateway's security headers)."""
    if not (docs_url or redoc_url) or not app.openapi_url:
        return
    assets = f"{(docs_url or redoc_url).rstrip('/')}/assets"
    app.mount(assets, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url

    if docs_url:
        async def swagger_ui(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}", title=f"{app.title} · Swagger UI",
                swagger_js_url=f"{root}{assets}/swagger-ui-bundle.js", swagger_css_url=f"{root}{assets}/swagger-ui.css",
                swagger_favicon_url=f"{root}{assets}/favicon.png",
                swagger_ui_parameters={"persistAuthorization": True, "displayRequestDuration": True})

        app.add_api_route(docs_url, swagger_ui, methods=["GET"], include_in_schema=False, dependencies=[PUBLIC])

    if redoc_url:
        async def redoc(request: Request) -> HTMLResponse:
            root = request.scope.get("root_path", "")
            return get_redoc_html(openapi_url=f"{root}{openapi_url}", title=f"{app.title} · ReDoc",
                                  redoc_js_url=f"{root}{assets}/redoc.standalone.js",
                                  redoc_favicon_url=f"{root}{assets}/favicon.png", with_google_fonts=False)

        app.add_api_route(redoc_url, redoc, methods=["GET"], include_in_schema=False, dependencies=[PUBLIC])


def database_problem(exc: sa_exc.SQLAlchemyError) -> Problem:
    """A database error as the caller sees it: an outage is a 503 with
    Retry-After, anything else an internal error (logged)."""
    if isinstance(exc, _DB_OUTAGE) or isinstance(getattr(exc, "orig", None), ConnectionError):
        log.warning("web.database_unavailable", error=repr(exc)[:300])
        return Unavailable(detail="the database does not answer; try again shortly")
    log.exception("web.database_error")
    return Internal(detail="internal error")




def database_check(engine) -> ReadyCheck:
    def check() -> None:
        import sqlalchemy as sa

        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    return check


def kafka_check(bootstrap: str) -> ReadyCheck:
    def check() -> None:
        from kezek.infra.procs import port_open

        host, _, port = bootstrap.split(",")[0].rpartition(":")
        if not port_open(int(port), host or "127.0.0.1"):
            raise ConnectionError(f"Kafka at {bootstrap} does not answer")

    return check
