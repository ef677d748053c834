"""The registration service's HTTP API (/api/v1), internal: only the gateway
calls it, with a service token (kezek/trust.py), as itself for the
anonymous steps and as the signed-in parent for the parent's own data. See
the README for the contract."""
from __future__ import annotations

from fastapi import FastAPI

from kezek.ratelimit import RateLimits
from kezek.settings import Settings
from kezek.trust import ServiceKeys, service_token_authenticator
from kezek.web import create_service_app, database_check
from services.registration import bootstrap
from services.registration.api import accounts, addresses, cabinet, drafts, errors
from services.registration.models import rate_limits
from services.registration.service import RegistrationService
from services.registration.settings import RegistrationSettings, registration_settings

__all__ = ["RegistrationSettings", "create_app"]


def create_app(settings: Settings | None = None, *, service: RegistrationService | None = None,
               keys: ServiceKeys | None = None, **build_options) -> FastAPI:
    """`service`: an already built one (tests); otherwise `bootstrap.build`
    with `build_options` (registry, oidc, clock, hasher, queue_transport)."""
    settings = registration_settings(settings)
    keys = keys or ServiceKeys.from_settings(settings)
    service = service or bootstrap.build(settings, keys=keys, **build_options)
    engine = service.sessions.kw["bind"]
    app = create_service_app("registration", title="Kezek registration",
                             ready_checks=[("database", database_check(engine))],
                             authenticate=service_token_authenticator(keys, "registration"),
                             max_body_bytes=settings.max_body_bytes)
    app.state.service = service
    app.state.engine = engine
    app.state.settings = settings
    app.state.rate_limits = RateLimits(engine, rate_limits, flush_seconds=settings.rate_limit_flush_seconds)
    errors.install(app)
    for module in (addresses, drafts, accounts, cabinet):
        app.include_router(module.router)
    return app
