"""The gateway's context: what every route shares (the clients of the
services behind it, the referral workflows, its database, the catalogs of
the portal, the shared rate limits), built once by `build` and kept on the
app (`request.app.state.gateway`)."""
from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from kezek.calendar import calendar
from kezek.client import ServiceClient
from kezek.db import make_session_factory, service_engine
from kezek.ratelimit import RateLimits
from kezek.trust import ServiceKeys
from services.gateway import i18n, views
from services.gateway.clients import (NotificationsClient, QueueClient, RegistrationClient, UpstreamError,
                                     VerificationClient)
from services.gateway.geo import nearest
from services.gateway.models import rate_limits
from services.gateway.readmodel import CabinetReadModel
from services.gateway.referrals import Referrals, TemporalReferrals
from services.gateway.settings import GatewaySettings


class KeptPages:
    """The last rendering of each of at most `capacity` slots (`Page.kept`),
    the least recently read dropped first. The gateway's (`Gateway.pages`), used
    on its event loop."""

    def __init__(self, capacity: int = 512):
        self.capacity = capacity
        self._pages: OrderedDict[tuple, tuple[dict, str]] = OrderedDict()

    def get(self, key: tuple) -> tuple[dict, str] | None:
        found = self._pages.get(key)
        if found is not None:
            self._pages.move_to_end(key)
        return found

    def put(self, key: tuple, page: tuple[dict, str]) -> None:
        self._pages[key] = page
        self._pages.move_to_end(key)
        while len(self._pages) > self.capacity:
            self._pages.popitem(last=False)

    def __len__(self) -> int:
        return len(self._pages)


class Gateway:
    def __init__(self, settings: GatewaySettings, *, keys: ServiceKeys,
                 transports: dict[str, httpx.AsyncBaseTransport] | None = None,
                 referrals: Referrals | None = None):
        t = transports or {}
        self.settings = settings
        self.keys = keys
        self.referrals = referrals or TemporalReferrals(settings.temporal_address, settings.temporal_namespace)
        self.calendar = calendar(settings.country)     # where a referral stands is reckoned in it
        self.tz = self.calendar.tz
        # The reader's moment (cabinet._today): tests set the day they need.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)

        def client(service: str, timeout: float = 10.0) -> ServiceClient:
            return ServiceClient(settings.url_of(service), keys=keys, caller="gateway", audience=service,
                                 transport=t.get(service), timeout=timeout)

        self.registration = RegistrationClient(client("registration"))
        self.queue = QueueClient(client("queue"))
        self.notifications = NotificationsClient(client("notifications"))
        self.verification = VerificationClient(client("verification"))
        self.engine = service_engine(settings, "gateway")
        self.sessions = make_session_factory(self.engine)
        self.limits = RateLimits(self.engine, rate_limits, flush_seconds=settings.rate_limit_flush_seconds)
        self.cabinet = CabinetReadModel(self.sessions, settings.cabinet_snapshot_seconds)
        self.mo_dir = settings.state_dir / "locale"
        i18n.compile_catalogs(self.mo_dir)
        self.secret = settings.secret_key.get_secret_value().encode()
        self._kindergartens: tuple[float, list[dict]] | None = None
        self._names: tuple[list[dict], dict[str, str]] | None = None
        self._categories: tuple[float, dict[str, bool]] | None = None
        self._address_tree: tuple[float, list[dict]] | None = None
        self.pages = KeptPages()          # pages read by many, rendered once per change (Page.kept)

    def gettext(self, lang: str):
        return i18n.translations(str(self.mo_dir), lang).gettext

    def csrf(self, token: str) -> str:
        """The form token of a draft or a session: an HMAC of its secret."""
        return hmac.new(self.secret, f"csrf\x00{token}".encode(), hashlib.sha256).hexdigest()[:32]

    def check_csrf(self, token: str, given: str) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf(token), given or "")

    async def aclose(self):
        for c in (self.registration, self.queue, self.notifications, self.verification):
            await c.http.aclose()
        self.cabinet.close()
        self.engine.dispose()

    # --- reference data, kept a while ----------------------------------------

    async def categories(self) -> list[str]:
        """The categories a parent may choose: those the queue's policy ranks
        (so the voucher programme is offered only where an administrator
        runs it), in the portal's order. Without the queue's answer, the
        ones every policy has."""
        return list(await self.category_checks())

    async def category_checks(self) -> dict[str, bool]:
        """The categories a parent may choose (as `categories`), each with
        whether a caseworker must confirm it (the policy's
        `needs_confirmation`): what the pages explain. Without the queue's
        answer, the defaults of every policy."""
        now = time.monotonic()
        if self._categories is None or self._categories[0] < now:
            try:
                found = await self.queue.policy()
                checks = {c["code"]: bool(c.get("needs_confirmation")) for c in found["policy"]["categories"]}
            except (UpstreamError, KeyError, TypeError):
                return {c: c in views.CONFIRMED_BY_DEFAULT for c in views.ALWAYS_OFFERED}
            self._categories = (now + 60, {c: checks[c] for c in views.CATEGORIES if c in checks})
        return self._categories[1]

    async def kindergartens(self) -> list[dict]:
        # The list changes rarely and every cabinet page needs it: a minute.
        now = time.monotonic()
        if self._kindergartens is None or self._kindergartens[0] < now:
            self._kindergartens = (now + 60, await self.queue.kindergartens())
        return self._kindergartens[1]

    async def kindergarten_names(self) -> dict[str, str]:
        """Each kindergarten's name by id: the same dict as long as the list
        is kept (the cabinet's answers made with it are kept as long)."""
        try:
            found = await self.kindergartens()
        except UpstreamError:
            return {}
        if self._names is None or self._names[0] is not found:
            self._names = (found, {str(k.get("id")): k.get("name") or str(k.get("id")) for k in found})
        return self._names[1]

    async def nearby(self, lat, lon, limit: int = 10) -> tuple[list[dict], bool]:
        try:
            return nearest(await self.kindergartens(), lat, lon, limit), True
        except UpstreamError:
            return [], False

    async def address_tree(self) -> list[dict]:
        # The registry's tree changes rarely; keep it for ten minutes.
        now = time.monotonic()
        if self._address_tree is None or self._address_tree[0] < now:
            self._address_tree = (now + 600, await self.registration.address_tree())
        return self._address_tree[1]
