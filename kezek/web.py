"""The FastAPI app factory every service uses: request ids bound to the logs,
/health (alive), /ready (its dependencies answer), /metrics (Prometheus),
and input errors as 4xx that name the field, never a 500."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from kezek.logging import get_logger
from kezek.metrics import LATENCY, REQUESTS

log = get_logger(__name__)

ReadyCheck = Callable[[], None]  # raises when the dependency is not ready


class DomainError(Exception):
    """A business refusal: shown to the caller with its reason, never a 500."""

    status_code = 409

    def __init__(self, message: str, *, field: str | None = None, status_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code:
            self.status_code = status_code


def field_errors(exc: RequestValidationError) -> list[dict]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header", "cookie")]
        out.append({"field": ".".join(loc) or "(body)", "message": err.get("msg", "invalid")})
    return out


def create_service_app(service: str, *, title: str | None = None, version: str = "1.0.0",
                       ready_checks: Iterable[tuple[str, ReadyCheck]] = (), **fastapi_kwargs) -> FastAPI:
    app = FastAPI(title=title or f"Kezek {service}", version=version, **fastapi_kwargs)
    checks = list(ready_checks)
    app.state.ready_checks = checks

    @app.middleware("http")
    async def request_context(request: Request, call_next):
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, service=service)
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        REQUESTS.labels(service, request.method, path, response.status_code).inc()
        LATENCY.labels(service, path).observe(time.perf_counter() - started)
        response.headers["x-request-id"] = request_id
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid_input(_request: Request, exc: RequestValidationError):
        errors = field_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(DomainError)
    async def refused(_request: Request, exc: DomainError):
        body = {"detail": exc.message}
        if exc.field:
            body["errors"] = [{"field": exc.field, "message": exc.message}]
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.get("/health", tags=["operations"], summary="Liveness: the process answers")
    async def health():
        return {"status": "ok", "service": service}

    @app.get("/ready", tags=["operations"], summary="Readiness: every dependency answers")
    def ready():
        failed = {}
        for name, check in app.state.ready_checks:
            try:
                check()
            except Exception as exc:
                failed[name] = repr(exc)
        if failed:
            return JSONResponse({"status": "unavailable", "service": service, "failed": failed}, status_code=503)
        return {"status": "ready", "service": service, "checks": [n for n, _ in app.state.ready_checks]}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def metrics():
        return PlainTextResponse(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


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
