"""The gateway: the parents' portal (server-rendered pages) and the JSON API
a mobile app uses, in front of registration, queue and notifications.
Routing, authentication, rate limits per client, request ids (kezek.web),
OpenAPI at /api/docs."""
import asyncio
import hashlib
import hmac
import time
from datetime import datetime
from zoneinfo import ZoneInfo
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from kezek.settings import Settings
from kezek.trust import ServiceKeys, parent_principal
from kezek.web import create_service_app, database_check
from kezek.db import make_engine, make_session_factory
from services.gateway import history, i18n, views, vouchers
from services.gateway.clients import NotificationsClient, QueueClient, RegistrationClient, UpstreamError
from services.gateway.geo import nearest
from services.gateway.messages import describe
from services.gateway.ratelimit import RateLimiter
from services.gateway.referrals import Referrals, TemporalReferrals

STATIC_DIR = __import__("pathlib").Path(__file__).parent / "static"


class GatewaySettings(Settings):
    """The shared settings plus what only the gateway needs."""
    public_url: str = ""                 # how parents reach the portal (links in e-mails)
    cookie_secure: bool = True           # browsers keep Secure cookies on http://localhost too
    rate_limit_per_minute: int = 120
    # Asking for an activation link, per client: a burst of 5, then one a
    # minute (the registration service also limits the links per account).
    activation_requests_burst: int = 5
    registration_url: str = ""
    queue_url: str = ""
    notifications_url: str = ""


class Gateway:
    """What the routes share: the clients, the catalogs, the limiter."""

    def __init__(self, settings: GatewaySettings, transports: dict[str, httpx.AsyncBaseTransport] | None,
                 referrals: Referrals | None = None):
        t = transports or {}
        self.referrals = referrals or TemporalReferrals(settings.temporal_address, settings.temporal_namespace)
        self.tz = ZoneInfo({"KG": "Asia/Bishkek", "KZ": "Asia/Almaty"}[settings.country])
        self.settings = settings
        self.registration = RegistrationClient(settings.registration_url or settings.url_of("registration"),
                                               transport=t.get("registration"))
        self.queue = QueueClient(settings.queue_url or settings.url_of("queue"), transport=t.get("queue"),
                                 keys=ServiceKeys.from_settings(settings))
        self.notifications = NotificationsClient(settings.notifications_url or settings.url_of("notifications"),
                                                 keys=ServiceKeys.from_settings(settings),
                                                 transport=t.get("notifications"))
        self.engine = make_engine(settings.database_url_for("gateway"))
        self.sessions = make_session_factory(self.engine)
        self.mo_dir = settings.state_dir / "locale"
        i18n.compile_catalogs(self.mo_dir)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.activation_limiter = RateLimiter(1, burst=settings.activation_requests_burst)
        self.secret = settings.secret_key.get_secret_value().encode()
        self._kindergartens: tuple[float, list[dict]] | None = None
        self._categories: tuple[float, list[str]] | None = None

    def gettext(self, lang: str):
        return i18n.translations(str(self.mo_dir), lang).gettext

    def csrf(self, token: str) -> str:
        return hmac.new(self.secret, f"csrf\x00{token}".encode(), hashlib.sha256).hexdigest()[:32]

    def check_csrf(self, token: str, given: str) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(token), given or "")

    async def aclose(self):
        for c in (self.registration, self.queue, self.notifications):
            await c.aclose()
        self.engine.dispose()

    # --- what the cabinet shows -------------------------------------------

    async def children(self, token: str) -> dict:
        """The parent's own data and children, each with its queue entry and
        referrals. Applications come from registration for this session's
        account only; the queue is asked about those ids and no others."""
        me = await self.registration.me(token)
        apps = me["applications"]
        parent = parent_principal(me["account"]["id"])

        names = await self.kindergarten_names()

        today = datetime.now(self.tz).date().isoformat()

        async def queue_side(app: dict) -> dict:
            out = {"queue": None, "referrals": [], "queue_error": None}
            try:
                raw = await self.queue.application(app["id"], parent)
                if raw is not None:
                    positions = None if "positions" in raw else await self.queue.positions(app["id"], parent)
                    out["queue"] = views.entry(raw, positions, names)
                    first = next((p for p in out["queue"]["positions"] if p.get("position")), None)
                    if not out["queue"]["history"]:
                        if first is not None:
                            await asyncio.to_thread(history.seen, self.sessions, app["id"],
                                                    first["kindergarten_id"], int(first["position"]))
                        out["queue"]["history"] = await asyncio.to_thread(history.points, self.sessions, app["id"])
                    live = views.live_referral(raw)
                    if live is not None:
                        rid = str(live.get("referral_id") or live.get("id"))
                        status = await self.referrals.status(rid)
                        out["referrals"] = [views.referral(live, names, status, today)]
            except UpstreamError as exc:
                out["queue_error"] = "unavailable" if exc.status >= 500 else "refused"
            return out

        sides = await asyncio.gather(*(queue_side(a) for a in apps))
        decided = await asyncio.to_thread(vouchers.decisions, self.sessions, [a["id"] for a in apps])
        for app, side in zip(apps, sides):
            app.update(side)
            app["voucher"] = vouchers.view(app, decided.get(app["id"]))
        return me

    async def categories(self) -> list[str]:
        """The categories a parent may choose: those the queue's policy ranks
        (so the voucher programme is offered only where an administrator
        runs it), in the portal's order. Without the queue's answer, the
        ones every policy has."""
        now = time.monotonic()
        if self._categories is None or self._categories[0] < now:
            try:
                found = await self.queue.policy()
                known = {c["code"] for c in found["policy"]["categories"]}
            except (UpstreamError, KeyError, TypeError):
                return list(views.ALWAYS_OFFERED)
            self._categories = (now + 60, [c for c in views.CATEGORIES if c in known])
        return self._categories[1]

    async def kindergarten_names(self) -> dict[str, str]:
        try:
            return {str(k.get("id")): k.get("name") or str(k.get("id")) for k in await self.kindergartens()}
        except UpstreamError:
            return {}

    async def kindergartens(self) -> list[dict]:
        # The list changes rarely and every cabinet page needs it: a minute.
        now = time.monotonic()
        if self._kindergartens is None or self._kindergartens[0] < now:
            self._kindergartens = (now + 60, await self.queue.kindergartens())
        return self._kindergartens[1]

    async def inbox(self, parent_id: str) -> tuple[list[dict], bool]:
        try:
            return await self.notifications.inbox(parent_id), True
        except UpstreamError:
            return [], False

    async def nearby(self, lat, lon, limit: int = 10) -> tuple[list[dict], bool]:
        try:
            return nearest(await self.kindergartens(), lat, lon, limit), True
        except UpstreamError:
            return [], False

    async def owned_referral(self, token: str, referral_id: str) -> tuple[dict, dict] | None:
        me = await self.children(token)
        for app in me["applications"]:
            for r in app["referrals"]:
                if str(r.get("referral_id") or r.get("id")) == referral_id:
                    return app, r
        return None

    async def actor(self, token: str) -> str:
        return f"parent:{(await self.registration.identify(token))['account_id']}"

    async def owned_application(self, token: str, application_id: str) -> dict | None:
        me = await self.registration.me(token)
        return next((a for a in me["applications"] if a["id"] == application_id), None)


def client_key(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    secret = auth.partition(" ")[2] or request.cookies.get("kezek_session", "")
    if secret:
        return "t:" + hashlib.sha256(secret.encode()).hexdigest()[:24]
    return "ip:" + (request.client.host if request.client else "?")


def create_app(settings: GatewaySettings | Settings | None = None, *,
               transports: dict[str, httpx.AsyncBaseTransport] | None = None,
               referrals: Referrals | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    if not isinstance(settings, GatewaySettings):
        settings = GatewaySettings(**settings.model_dump())
    gw = Gateway(settings, transports, referrals)

    @asynccontextmanager
    async def lifespan(_app):
        yield
        await gw.aclose()

    app = create_service_app("gateway", title="Kezek parents' API",
                             ready_checks=[("database", database_check(gw.engine))],
                             description="The JSON API of the parents' portal (for a mobile app). "
                                         "Log in with POST /api/v1/sessions and send the token as "
                                         "`Authorization: Bearer <token>`.",
                             docs_url="/api/docs", openapi_url="/api/openapi.json", redoc_url=None,
                             lifespan=lifespan)
    app.state.gateway = gw
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.middleware("http")
    async def limits_and_headers(request: Request, call_next):
        path = request.url.path
        limited = path.startswith("/api/") or request.method != "GET"
        if limited and not path.startswith(("/api/docs", "/api/openapi")):
            wait = gw.limiter.take(client_key(request))
            if wait > 0:
                lang = i18n.pick_language(None, request.cookies.get("kezek_lang"),
                                          request.headers.get("accept-language"), settings.country)
                err = describe({"field": "request", "code": "rate_limited"}, gw.gettext(lang))
                return JSONResponse({"detail": err["text"], "errors": [err]}, status_code=429,
                                    headers={"Retry-After": str(int(wait) + 1)})
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")   # activation links carry a token
        response.headers.setdefault("X-Frame-Options", "DENY")
        if not path.startswith("/api/docs"):
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                "form-action 'self' " + (settings.public_url or "") + "; frame-ancestors 'none'")
        return response

    @app.exception_handler(UpstreamError)
    async def upstream_error(request: Request, exc: UpstreamError):
        lang = i18n.pick_language(None, request.cookies.get("kezek_lang"),
                                  request.headers.get("accept-language"), settings.country)
        gettext = gw.gettext(lang)
        if exc.status >= 500:
            errors = [describe({"field": "request", "code": "unavailable"}, gettext)]
            status = 503
        else:
            errors = [describe(e, gettext) for e in exc.errors] or [
                describe({"field": "request", "code": "refused", "message": exc.detail}, gettext)]
            status = exc.status
        body = {"detail": "; ".join(e["text"] for e in errors),
                "errors": [{"field": e["field"], "code": e["code"], "message": e["text"]} for e in errors]}
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse(body, status_code=status, headers=headers)

    app.include_router(json_api(gw))
    from services.gateway.public import router as public_router  # the public stream's contract and webhooks
    app.include_router(public_router)
    from services.gateway.portal import portal_router
    app.include_router(portal_router(gw))
    return app


def json_api(gw: Gateway) -> APIRouter:
    r = APIRouter(prefix="/api/v1")

    async def bearer(authorization: Annotated[str, Header(description="Bearer <token>")] = "") -> str:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise UpstreamError(401, [{"field": "session", "code": "session_invalid"}])
        await gw.registration.identify(token)
        return token

    Token = Annotated[str, Depends(bearer)]
    Json = Annotated[dict[str, Any], Body()]

    @r.get("/address/regions", tags=["address"])
    async def regions():
        return await gw.registration.regions()

    @r.get("/address/regions/{region}/districts", tags=["address"])
    async def districts(region: str):
        return await gw.registration.districts(region)

    @r.get("/address/districts/{district}/settlements", tags=["address"])
    async def settlements(district: str):
        return await gw.registration.settlements(district)

    @r.get("/address/settlements/{settlement}/streets", tags=["address"])
    async def streets(settlement: str, q: str = ""):
        return await gw.registration.streets(settlement, q)

    @r.post("/drafts", status_code=201, tags=["application"], summary="Start an application")
    async def start(body: Json = None):
        return await gw.registration.start_draft((body or {}).get("locale", "ky"))

    @r.get("/drafts/{draft}", tags=["application"])
    async def draft(draft: str):
        found = await gw.registration.draft(draft)
        if found is None:
            raise UpstreamError(404, [{"field": "draft", "code": "not_found"}])
        return found

    @r.put("/drafts/{draft}/child", tags=["application"], summary="Step 1: the child")
    async def child(draft: str, body: Json):
        return await gw.registration.save_child(draft, body)

    @r.put("/drafts/{draft}/parent", tags=["application"], summary="Step 2: parent, address, contacts")
    async def parent(draft: str, body: Json):
        return await gw.registration.save_parent(draft, body)

    @r.post("/drafts/{draft}/email-code", status_code=202, tags=["application"], summary="Get code")
    async def code(draft: str, body: Json = None):
        return await gw.registration.request_code(draft, (body or {}).get("locale", "ky"))

    @r.post("/drafts/{draft}/email-code/verify", tags=["application"])
    async def verify(draft: str, body: Json):
        return await gw.registration.verify_code(draft, str(body.get("code", "")))

    @r.get("/categories", tags=["application"], summary="The categories a parent may choose at step 3")
    async def categories():
        return await gw.categories()

    @r.post("/drafts/{draft}/submit", status_code=201, tags=["application"], summary="Step 3: submit")
    async def submit(draft: str, body: Json):
        return await gw.registration.submit(draft, body)

    @r.post("/activation", tags=["accounts"], summary="Set the password with the one-time link's token")
    async def activate(body: Json):
        return await gw.registration.activate(str(body.get("token", "")), str(body.get("password", "")))

    @r.post("/activation/resend", status_code=202, tags=["accounts"],
            summary="Ask for an activation link by e-mail (the answer is the same whether or not "
                    "the address has an account)")
    async def resend_activation(request: Request, body: Json):
        if gw.activation_limiter.take(client_key(request)) > 0:
            raise UpstreamError(429, [{"field": "request", "code": "rate_limited"}])
        await gw.registration.resend_activation(str(body.get("email", "")), body.get("locale"))
        return {"status": "accepted"}

    @r.post("/sessions", status_code=201, tags=["accounts"], summary="Log in: a bearer token")
    async def login(body: Json):
        return await gw.registration.login(str(body.get("login", "")), str(body.get("password", "")), "bearer")

    @r.delete("/sessions/current", status_code=204, tags=["accounts"])
    async def logout(token: Token):
        await gw.registration.logout(token)

    @r.get("/me", tags=["cabinet"], summary="Own data and children with queue status, positions, referrals")
    async def me(token: Token):
        return await gw.children(token)

    @r.get("/me/notifications", tags=["cabinet"])
    async def notifications(token: Token):
        me = await gw.registration.me(token)
        items, ok = await gw.inbox(me["account"]["id"])
        if not ok:
            raise UpstreamError(503)
        return items

    @r.post("/me/notifications/{message_id}/read", status_code=204, tags=["cabinet"],
            summary="Mark a notification as read")
    async def notification_read(message_id: str, token: Token):
        # The inbox is asked by the session's own account id: another
        # family's message is simply not found there.
        me = await gw.registration.me(token)
        await gw.notifications.mark_read(me["account"]["id"], message_id)

    @r.get("/me/kindergartens-nearby", tags=["cabinet"], summary="Kindergartens near the address, nearest first")
    async def kindergartens_nearby(token: Token, application_id: str | None = None, limit: int = 10):
        me = await gw.registration.me(token)
        apps = [a for a in me["applications"] if application_id in (None, a["id"])]
        if not apps:
            raise UpstreamError(404, [{"field": "application", "code": "not_found"}])
        addr = apps[0]["address"]
        items, ok = await gw.nearby(addr.get("lat"), addr.get("lon"), max(1, min(limit, 50)))
        if not ok:
            raise UpstreamError(503)
        return items

    @r.post("/me/referrals/{referral_id}/cancel", tags=["cabinet"], summary="Cancel direction")
    async def cancel(referral_id: str, token: Token):
        found = await gw.owned_referral(token, referral_id)
        if found is None:
            raise UpstreamError(404, [{"field": "referral", "code": "not_found"}])
        if "cancel" not in found[1].get("actions", []):
            raise UpstreamError(409, [{"field": "referral", "code": "refused"}])
        return await gw.referrals.cancel(referral_id, await gw.actor(token))

    @r.post("/me/referrals/{referral_id}/extend", tags=["cabinet"], summary="Extend direction")
    async def extend(referral_id: str, token: Token):
        found = await gw.owned_referral(token, referral_id)
        if found is None:
            raise UpstreamError(404, [{"field": "referral", "code": "not_found"}])
        if "extend" not in found[1].get("actions", []):
            raise UpstreamError(409, [{"field": "referral", "code": "refused"}])
        return await gw.referrals.extend(referral_id, await gw.actor(token))

    @r.post("/me/applications/{application_id}/remove", tags=["cabinet"], summary="Remove from queue")
    async def remove(application_id: str, token: Token):
        if await gw.owned_application(token, application_id) is None:
            raise UpstreamError(404, [{"field": "application", "code": "not_found"}])
        await gw.queue.remove(application_id, await gw.actor(token))
        await gw.registration.mark_removed(token, application_id)
        return {"status": "removed"}

    return r
