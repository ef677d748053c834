"""The queue's HTTP API, versioned under /api/v1 and documented by OpenAPI
(/docs): kindergartens and the register of free places, queue entries,
positions with their explanation, the anonymised public queue, the audit
trail, allocation runs with their replay, and the policy.

An internal API: every call carries a service token (kezek.trust) made for
the queue, naming the calling service and the verified actor it acts for;
that actor, never a header the caller sets, is who the audit trail records.
Each route declares who may use it (access.py); public without a token:
/health, /ready, /metrics and the anonymised public queue. Allocation has no
endpoint: it is never started by a person.

Routers per resource: kindergartens.py (and places), districts.py (districts,
closing, the publication schedule), placements.py (a kindergarten's
referrals and children, a child leaving), entries.py, family.py (the
family's own copy, its erasure request), public.py (the
anonymised queue, the figures), audit.py (trail, runs, replay), policy.py;
models.py holds the bodies.
"""
from __future__ import annotations

from fastapi import Depends, FastAPI, Request

from kezek.settings import Settings
from kezek.trust import ServiceKeys, service_token_authenticator
from kezek.web import DomainError, create_service_app, database_check, problem_response
from services.queue.api import audit, districts, entries, family, kindergartens, placements, policy, public
from services.queue.api.deps import clean_query
from services.queue.domain.refusals import DomainError as RuleBroken, Refused
from services.queue.usecases import Queue

ROUTERS = (kindergartens.router, districts.router, placements.router, entries.router, family.router, public.router,
           audit.router, policy.router)


def create_app(settings: Settings, queue: Queue | None = None, *, keys: ServiceKeys | None = None) -> FastAPI:
    if queue is None:
        from services.queue.runtime import build_queue

        queue = build_queue(settings)
    engine = queue.sessions.kw["bind"]
    keys = keys or ServiceKeys.from_settings(settings)
    app = create_service_app("queue", title="Kezek queue", description=__doc__,
                             ready_checks=[("database", database_check(engine))],
                             authenticate=service_token_authenticator(keys, "queue"),
                             dependencies=[Depends(clean_query)])
    app.state.queue = queue

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused):
        return problem_response(DomainError(exc.code, field=exc.field, status_code=exc.status_code,
                                            params=exc.params), request.url.path)

    @app.exception_handler(RuleBroken)
    async def rule_broken(request: Request, exc: RuleBroken):
        return problem_response(DomainError(str(exc), status_code=422), request.url.path)

    for router in ROUTERS:
        app.include_router(router)
    return app
