"""Who is calling the gateway (`app.state.authenticate`, asked once per
request by kezek.trust.allow/PUBLIC):

- a parent: the session cookie of the portal or the JSON API's bearer. The
  session lives in registration; the gateway looks it up there
  (`POST /api/v1/sessions/lookup`, the secret in the body) and keeps the
  answer `session_cache_seconds` (5 s by default), so a family's app polling
  its cabinet costs registration one lookup every few seconds. A sign-out
  on this replica forgets it at once; another replica may still open pages
  for the ended session until its cache entry expires.
- an administrator at the console: a service token of the `kezek` command
  (`cli`) made for the gateway, acting for an admin (the webhooks admin).
- anyone else is anonymous.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

from fastapi import Request

from kezek.trust import Principal, ServiceKeys, parent_principal
from services.gateway.clients import RegistrationClient

SESSION_COOKIE = "kezek_session"
MAX_CACHED = 100_000


def _is_service_token(secret: str) -> bool:
    # A signed token has three dot-separated parts; a session secret is
    # url-safe base64 without dots.
    return secret.count(".") == 2


def session_secret(request: Request) -> str:
    """The parent's session secret: the bearer of the JSON API or the cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip() and not _is_service_token(token.strip()):
        return token.strip()
    return request.cookies.get(SESSION_COOKIE, "")


class Sessions:
    def __init__(self, registration: RegistrationClient, keys: ServiceKeys, *, cache_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self.registration = registration
        self.keys = keys
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def authenticate(self, request: Request) -> Principal | None:
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        bearer = bearer.strip()
        if scheme.lower() == "bearer" and _is_service_token(bearer):
            return self.keys.verify(bearer, "gateway")
        secret = session_secret(request)
        return await self.parent(secret) if secret else None

    async def parent(self, secret: str) -> Principal | None:
        key = _key(secret)
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.registration.lookup_session(secret)
        who = parent_principal(found["account_id"]) if found else None
        if len(self._cache) >= MAX_CACHED:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) >= MAX_CACHED:
                self._cache.clear()
        self._cache[key] = (now + self.cache_seconds, who)
        return who

    def forget(self, secret: str) -> None:
        self._cache.pop(_key(secret), None)


def _key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
