"""The staff pages: server-rendered, in Russian, Kyrgyz and Kazakh,
behind a staff session (argon2 passwords, an HttpOnly cookie, a CSRF token
in every form). Every route declares its permission (pages.py: the roles of
domain.PERMISSIONS, in their scope); the session cookie is this app's
authenticator. Routes are thin: they read the form, call one use case and
render its answer; refusals re-render the form with the field named in the
caseworker's language.

Routers per page group: signin.py, cases.py (worklist and cases), abuse.py,
vouchers.py, audit.py, kindergartens.py (a kindergarten's places, referrals
and children), districts.py (a district office's kindergartens, schedule and
figures), children.py (the search by PIN and who looked at a child),
family.py (the internal routes: the family's own copy and which offices
looked at its data, for the gateway acting for a parent, by service token);
what they depend on is in pages.py."""
from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles

from kezek.settings import Settings
from kezek.trust import ServiceKeys, service_token_authenticator
from kezek.web import create_service_app, database_check
from services.verification import bootstrap
from services.verification.api import (abuse, audit, cases, children, districts, family, kindergartens, signin,
                                       vouchers)
from services.verification.api.pages import clean_query, install_error_pages, staff_session
from services.verification.i18n import Pages
from services.verification.referrals import ReferralCommands
from services.verification.settings import as_settings

HERE = Path(__file__).resolve().parent.parent
ROUTERS = (signin.router, cases.router, children.router, abuse.router, vouchers.router, audit.router,
           kindergartens.router, districts.router, family.router)


def _static_version() -> str:
    h = hashlib.sha256()
    for f in sorted((HERE / "static").iterdir()):
        h.update(f.read_bytes())
    return h.hexdigest()[:10]


def authenticator(keys: ServiceKeys):
    """The staff session cookie, or (for the one internal route, family.py)
    a service token made for verification: a request that carries an
    Authorization header is judged by its token alone."""
    tokens = service_token_authenticator(keys, "verification")

    def authenticate(request: Request):
        if request.headers.get("authorization"):
            return tokens(request)
        return staff_session(request)
    return authenticate


def create_app(settings: Settings | None = None, *, referrals: ReferralCommands | None = None,
               clock=None, hasher=None, queue=None, keys: ServiceKeys | None = None) -> FastAPI:
    settings = as_settings(settings)
    service = bootstrap.build(settings, referrals=referrals, clock=clock, hasher=hasher, queue=queue)
    # A certificate's form carries its scan: the body limit leaves room for
    # it, so that an oversize scan is refused on the page, naming the field.
    max_body = max(settings.max_body_bytes, 2 * service.policy.max_scan_bytes + 1024 * 1024)
    app = create_service_app("verification", title="Kezek verification", max_body_bytes=max_body,
                             ready_checks=[("database", database_check(service.engine))],
                             authenticate=authenticator(keys or ServiceKeys.from_settings(settings)),
                             dependencies=[Depends(clean_query)])
    app.state.service = service
    app.state.engine = service.engine
    app.state.pages = Pages(settings.state_dir, _static_version())
    app.state.cookie_secure = settings.cookie_secure
    app.state.trusted_proxies = frozenset(settings.verification_trusted_proxies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(security_headers)
    install_error_pages(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


async def security_headers(request: Request, call_next):
    response = await call_next(request)
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    if request.url.path.startswith("/static/"):
        h["Cache-Control"] = "public, max-age=604800, immutable"
    else:
        # Pages carry personal data: never cached, never framed.
        h.setdefault("Cache-Control", "no-store")
        h.setdefault("Content-Security-Policy",
                     "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                     "form-action 'self'; base-uri 'none'; object-src 'self'")
    return response
