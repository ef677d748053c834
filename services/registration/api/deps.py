"""What registration's routes share: the service, who calls (verified by the
service token) and from which client, and the rate limits of the service.

Only the gateway calls registration. It calls as itself (`service:gateway`)
for the anonymous steps and as `parent:<account>` for a signed-in parent,
and passes the address the person came from in `X-Kezek-Client`: the
token proves the gateway, so its word on the address is taken."""
from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from kezek.problems import TooManyRequests
from kezek.ratelimit import RateLimits
from kezek.trust import ANONYMOUS, PARENT, parent, services
from services.registration.service import Caller, RegistrationService
from services.registration.settings import RegistrationSettings

CLIENT_HEADER = "X-Kezek-Client"
GATEWAY = services("gateway")        # the gateway acting as itself: anonymous steps
FAMILY = parent()                    # the gateway acting for a signed-in parent


async def get_service(request: Request) -> RegistrationService:
    # async: FastAPI would run a plain function in the thread pool, one more
    # hop per request for an attribute read.
    return request.app.state.service


Svc = Annotated[RegistrationService, Depends(get_service)]


def _client(request: Request) -> str:
    return request.headers.get(CLIENT_HEADER, "")[:100]


async def caller(request: Request) -> Caller:
    """The verified principal (the route's permission set it) and the
    client; each call is counted against the service's rate limits: per
    signed-in account, else per client, and per draft on a draft's routes.
    Counted on the event loop's thread while the counts stay in memory (a
    plain function would be a hop to the thread pool and back per request),
    in a worker thread when a count must reach the database."""
    principal = getattr(request.state, "principal", None) or ANONYMOUS
    client = _client(request)
    limits: RateLimits = request.app.state.rate_limits
    settings: RegistrationSettings = request.app.state.settings
    checks = []
    if principal.role == PARENT:
        # A signed-in parent counts against the account, not the address:
        # many families share one carrier's address.
        checks.append((f"account:{principal.family}", settings.registration_requests_per_account))
    elif client and request.url.path != "/api/v1/sessions/lookup":
        # (Session lookups are bounded by the gateway, per address for the
        # ones that fail; counting valid ones here would limit the families
        # behind one address together.)
        checks.append((f"client:{client}", settings.registration_requests_per_client))
    token = request.path_params.get("token")
    if token and request.url.path.startswith("/api/v1/drafts/"):
        from services.registration.domain import token_hash

        checks.append((f"draft:{token_hash(token)[:32]}", settings.registration_requests_per_draft))
    for key, limit in checks:
        wait = limits.hit_in_memory(key, limit)
        if wait is None:
            wait = await run_in_threadpool(limits.hit, key, limit)
        if wait:
            raise TooManyRequests(wait, field="request")
    return Caller(principal, client)


By = Annotated[Caller, Depends(caller)]
