"""The gateway: the parents' portal (server-rendered pages) and the JSON API
a mobile app uses, in front of registration, queue and notifications, plus
the public stream's contract and its webhooks administration. Every route
declares who may use it (kezek/trust.py); `create_app` wires the skeleton
(kezek/web.py), the authenticator (sessions.py), the shared rate limits
(limits.py), the error answers in the reader's language (errors.py) and the
routers. OpenAPI at /api/docs (Swagger UI) and /api/redoc (ReDoc), offline."""
from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kezek.problems import Problem, problem_response
from kezek.settings import Settings
from kezek.trust import ServiceKeys
from kezek.web import create_service_app, database_check
from services.gateway import errors, jsonapi, portal
from services.gateway.clients import UpstreamError
from services.gateway.context import Gateway
from services.gateway.limits import Allowance, GatewayLimits, TrustedProxies
from services.gateway.referrals import Referrals
from services.gateway.sessions import Sessions
from services.gateway.settings import GatewaySettings, gateway_settings

__all__ = ["GatewaySettings", "create_app"]

STATIC_DIR = __import__("pathlib").Path(__file__).parent / "static"
DESCRIPTION = ("The JSON API of the parents' portal (for a mobile app). Log in with POST /api/v1/sessions and "
               "send the token as `Authorization: Bearer <token>`. Requests are limited per signed-in parent "
               "and per client address; a 429 says when to try again in Retry-After.")


def build(settings: Settings | None = None, *, transports: dict[str, httpx.AsyncBaseTransport] | None = None,
          referrals: Referrals | None = None, keys: ServiceKeys | None = None) -> Gateway:
    """The one place the gateway's context is built."""
    settings = gateway_settings(settings)
    keys = keys or ServiceKeys.from_settings(settings)
    gw = Gateway(settings, keys=keys, transports=transports, referrals=referrals)
    gw.parents = Sessions(gw.registration, keys, cache_seconds=settings.session_cache_seconds)
    return gw


def http_workers(settings: Settings) -> int:
    """Worker processes on the gateway's port, where every parent's request
    lands (`KEZEK_GATEWAY_WORKERS`; `kezek serve` asks through kezek.wiring)."""
    return gateway_settings(settings).gateway_workers


def create_app(settings: Settings | None = None, *, transports: dict[str, httpx.AsyncBaseTransport] | None = None,
               referrals: Referrals | None = None, keys: ServiceKeys | None = None) -> FastAPI:
    gw = build(settings, transports=transports, referrals=referrals, keys=keys)
    settings = gw.settings

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await gw.aclose()

    app = create_service_app("gateway", title="Kezek parents' API", description=DESCRIPTION,
                             ready_checks=[("database", database_check(gw.engine))],
                             authenticate=gw.parents.authenticate, max_body_bytes=settings.max_body_bytes,
                             docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url="/api/redoc",
                             lifespan=lifespan)
    app.state.gateway = gw
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    limits = GatewayLimits(gw.limits, gw.parents, TrustedProxies(settings.trusted_proxies),
                           Allowance(settings.rate_limit_per_minute, settings.rate_limit_per_address_per_minute))

    # Innermost: inside the skeleton's request ids, metrics and body limit.
    app.user_middleware.append(Middleware(LimitsAndHeaders, limits=limits, public_url=settings.public_url))
    errors.install(app)
    for router in (*jsonapi.routers, *_public_routers(), *portal.routers):
        app.include_router(router)
    return app


class LimitsAndHeaders:
    """The rate limits (authenticating the caller on the way) and the
    security headers of every answer. Plain ASGI: Starlette's
    BaseHTTPMiddleware runs the app in a task of its own with streams
    between them, a cost on every request."""

    def __init__(self, app: ASGIApp, limits: GatewayLimits, public_url: str):
        self.app, self.limits, self.public_url = app, limits, public_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request = Request(scope, receive)
        try:
            wait = await self.limits.check(request)
        except UpstreamError as exc:         # registration did not answer the session lookup
            return await (await errors.upstream_answer(request, exc))(scope, receive, send)
        except Problem as exc:               # an invalid service token
            return await problem_response(exc, request.url.path)(scope, receive, send)
        if wait:
            return await errors.too_many(request, wait)(scope, receive, send)
        path = request.url.path

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                security_headers(MutableHeaders(scope=message), path, self.public_url)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _public_routers():
    from services.gateway.public import router   # the public stream's contract and webhooks

    return (router,)


def security_headers(headers: MutableHeaders, path: str, public_url: str) -> None:
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")   # activation links carry a token
    headers.setdefault("X-Frame-Options", "DENY")
    if not path.startswith(("/api/docs", "/api/redoc")):      # their pages run an inline script
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self' " + (public_url or "") + "; frame-ancestors 'none'")
