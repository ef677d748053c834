"""Calls from one service to another's /api/v1: every call carries a service
token (kezek.trust) naming the caller, the called service and the verified
actor the caller acts for, plus the request id for the logs. Answers other
than success become `UpstreamError`s: a refusal keeps its status and field
errors, an outage (no answer, 5xx) is a 503. Each call is a client span and
carries its trace (`traceparent`) to the called service (kezek.tracing).

Path parameters are quoted with `seg()`: a value with a slash, a control
character or odd bytes stays one path segment and never reaches the other
service as a different path.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from opentelemetry.trace import SpanKind

from kezek import tracing
from kezek.logging import get_logger
from kezek.trust import Principal, ServiceKeys

log = get_logger(__name__)

# A token is valid for a minute; reuse it for half of that.
_REUSE_SECONDS = 30

# How long `kezek serve` keeps a connection no request came on (uvicorn's
# timeout_keep_alive), and how long our clients keep one for the next call:
# less, so that a client never sends a call on a connection the service is
# closing. At the same 5 s (both libraries' default) a call that picked up
# a connection at the moment the service let it go ended in a protocol
# error, a 503 for a parent with no answer from the service logged.
SERVER_KEEP_ALIVE = 5
KEEP_ALIVE = 2.0
# (the connection bounds are httpx's defaults; only the expiry differs)
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEP_ALIVE)


def seg(value: Any) -> str:
    """One path segment, whatever the value holds."""
    return quote(str(value), safe="")


class UpstreamError(Exception):
    """A service refused (4xx, with field errors) or failed (5xx, no answer)."""

    def __init__(self, status: int, errors: list[dict] | None = None, detail: str = "", code: str = ""):
        super().__init__(detail or f"upstream answered {status}")
        self.status = status
        self.errors = errors or []
        self.detail = detail
        self.code = code


class _Tokens:
    """Signed tokens, reused while fresh: signing costs ~60 µs, a page may
    make several calls."""

    def __init__(self, keys: ServiceKeys, caller: str, audience: str):
        self.keys, self.caller, self.audience = keys, caller, audience
        self._cache: dict[tuple, tuple[float, str]] = {}

    def header(self, actor: Principal | None) -> str:
        key = (actor,)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is None or hit[0] < now:
            token = self.keys.sign(self.caller, self.audience, actor)
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = self._cache[key] = (now + _REUSE_SECONDS, token)
        return f"Bearer {hit[1]}"


def _headers(tokens: _Tokens, actor: Principal | None, extra: dict | None) -> dict:
    headers = dict(extra or {})
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:
        headers["x-request-id"] = request_id
    headers["authorization"] = tokens.header(actor)
    headers.update(tracing.current_context())   # the call's span, as the called service's parent
    return headers


def _span(method: str, base_url: str, path: str, audience: str):
    """A client span around one call to another service (kezek.tracing)."""
    return tracing.tracer().start_as_current_span(f"{method} {audience}", kind=SpanKind.CLIENT, attributes={
        "http.request.method": method, "server.address": base_url, "url.path": path, "peer.service": audience})


def _unreachable(method: str, base_url: str, path: str, exc: httpx.HTTPError) -> UpstreamError:
    """A call that got no answer (refused, timed out, the connection
    dropped): logged, since the service has nothing to log, and a 503."""
    log.warning("client.no_answer", method=method, service=base_url, path=path, error=repr(exc)[:300])
    return UpstreamError(503, detail=f"{base_url}: {exc.__class__.__name__}")


def _answer(r: httpx.Response, ok_missing: bool) -> Any:
    if r.status_code == 404 and ok_missing:
        return None
    if r.status_code >= 400:
        try:
            body = r.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        errors = body.get("errors")
        raise UpstreamError(r.status_code, errors if isinstance(errors, list) else [],
                            str(body.get("detail") or ""), str(body.get("code") or ""))
    if r.status_code == 204 or not r.content:
        return None
    return r.json()


class ServiceClient:
    """Async client of one service, as `caller`."""

    def __init__(self, base_url: str, *, keys: ServiceKeys, caller: str, audience: str,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0):
        self._config = dict(base_url=base_url.rstrip("/"), transport=transport, timeout=timeout, limits=_LIMITS)
        self._tokens = _Tokens(keys, caller, audience)
        self.http = httpx.AsyncClient(**self._config)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _open(self) -> httpx.AsyncClient:
        # An app restarted in the same process (tests) gets a fresh pool.
        if self.http.is_closed:
            self.http = httpx.AsyncClient(**self._config)
        return self.http

    async def call(self, method: str, path: str, *, actor: Principal | None = None, json: Any = None,
                   params: dict | None = None, ok_missing: bool = False, headers: dict | None = None) -> Any:
        with _span(method, self._config["base_url"], path, self._tokens.audience) as span:
            try:
                r = await self._open().request(method, path, json=json, params=params,
                                               headers=_headers(self._tokens, actor, headers))
            except httpx.HTTPError as exc:
                raise _unreachable(method, self._config["base_url"], path, exc) from exc
            span.set_attribute("http.response.status_code", r.status_code)
            return _answer(r, ok_missing)


class SyncServiceClient:
    """The same for code that is not async (jobs, the command line)."""

    def __init__(self, base_url: str, *, keys: ServiceKeys, caller: str, audience: str,
                 transport: httpx.BaseTransport | None = None, timeout: float = 10.0):
        self._tokens = _Tokens(keys, caller, audience)
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, transport=transport, timeout=timeout, limits=_LIMITS)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, actor: Principal | None = None, json: Any = None,
             params: dict | None = None, ok_missing: bool = False, headers: dict | None = None) -> Any:
        with _span(method, self.base_url, path, self._tokens.audience) as span:
            try:
                r = self.http.request(method, path, json=json, params=params,
                                      headers=_headers(self._tokens, actor, headers))
            except httpx.HTTPError as exc:
                raise _unreachable(method, self.base_url, path, exc) from exc
            span.set_attribute("http.response.status_code", r.status_code)
            return _answer(r, ok_missing)
