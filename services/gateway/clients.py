"""The services behind the gateway, over their HTTP APIs (kezek/client.py):
every call carries a service token of the gateway, acting either for
itself (`service:gateway`: the anonymous steps, reference data) or for the
verified parent (`parent:<account>`). Path parameters are quoted (`seg`),
so whatever a parent types stays one path segment. The gateway imports no
other service's code."""
from __future__ import annotations

import contextvars

from kezek.client import ServiceClient, UpstreamError, seg  # noqa: F401  (one error type for every upstream call)
from kezek.trust import Principal

# The address the person came from, as the gateway determined it for this
# request (services/gateway/limits.py); registration limits by it.
CLIENT = contextvars.ContextVar("kezek_client", default="")
CLIENT_HEADER = "X-Kezek-Client"


class RegistrationClient:
    """services/registration (see its README): the anonymous steps as the
    gateway itself, the cabinet as the parent."""

    def __init__(self, http: ServiceClient):
        self.http = http

    async def call(self, method: str, path: str, who: Principal | None = None, **kw):
        headers = {CLIENT_HEADER: CLIENT.get()} if CLIENT.get() else None
        return await self.http.call(method, "/api/v1" + path, actor=who, headers=headers, **kw)

    async def regions(self):
        return await self.call("GET", "/address/regions")

    async def address_tree(self):
        return await self.call("GET", "/address/tree")

    async def districts(self, region: str):
        return await self.call("GET", f"/address/regions/{seg(region)}/districts")

    async def settlements(self, district: str):
        return await self.call("GET", f"/address/districts/{seg(district)}/settlements")

    async def streets(self, settlement: str, q: str = ""):
        return await self.call("GET", f"/address/settlements/{seg(settlement)}/streets", params={"q": q})

    async def start_draft(self, locale: str):
        return await self.call("POST", "/drafts", json={"locale": locale})

    async def draft(self, token: str) -> dict | None:
        """The draft, or None when there is none (unknown, or submitted)."""
        try:
            return await self.call("GET", f"/drafts/{seg(token)}", ok_missing=True)
        except UpstreamError as exc:
            if exc.status in (409, 422):
                return None
            raise

    async def save_child(self, token: str, data: dict):
        return await self.call("PUT", f"/drafts/{seg(token)}/child", json=data)

    async def save_parent(self, token: str, data: dict):
        return await self.call("PUT", f"/drafts/{seg(token)}/parent", json=data)

    async def request_code(self, token: str, locale: str):
        return await self.call("POST", f"/drafts/{seg(token)}/email-code", json={"locale": locale})

    async def verify_code(self, token: str, code: str):
        return await self.call("POST", f"/drafts/{seg(token)}/email-code/verify", json={"code": code})

    async def submit(self, token: str, data: dict):
        return await self.call("POST", f"/drafts/{seg(token)}/submit", json=data)

    async def check_activation(self, token: str):
        return await self.call("POST", "/activation/check", json={"token": token})

    async def activate(self, token: str, password: str):
        return await self.call("POST", "/activation", json={"token": token, "password": password})

    async def resend_activation(self, email: str, locale: str | None = None):
        return await self.call("POST", "/activation/resend", json={"email": email, "locale": locale})

    async def login(self, login: str, password: str, kind: str):
        return await self.call("POST", "/sessions", json={"login": login, "password": password, "kind": kind})

    async def lookup_session(self, token: str) -> dict | None:
        """The account a session token opens, or None."""
        try:
            return await self.call("POST", "/sessions/lookup", json={"token": token})
        except UpstreamError as exc:
            if exc.status in (401, 404, 422):
                return None
            raise

    async def logout(self, who: Principal, token: str):
        return await self.call("POST", "/sessions/end", who, json={"token": token})

    async def me(self, who: Principal):
        return await self.call("GET", "/me", who)

    async def mark_removed(self, who: Principal, application_id: str):
        return await self.call("POST", f"/me/applications/{seg(application_id)}/removed", who)

    async def family_copy(self, who: Principal) -> dict:
        """Everything registration holds about the parent's account."""
        return await self.call("GET", "/me/copy", who)

    async def sso_start(self, redirect_uri: str):
        return await self.call("POST", "/sso/tunduk/start", json={"redirect_uri": redirect_uri})

    async def sso_finish(self, state: str, code: str, kind: str):
        return await self.call("POST", "/sso/tunduk/finish", json={"state": state, "code": code, "kind": kind})


class QueueClient:
    """The queue service's API (services/queue/api/). The gateway asks only
    about applications registration says belong to the parent, acting for
    that parent; reference data (kindergartens, policy) as itself."""

    def __init__(self, http: ServiceClient):
        self.http = http

    async def call(self, method: str, path: str, who: Principal | None = None, **kw):
        return await self.http.call(method, path, actor=who, **kw)

    async def kindergartens(self) -> list[dict]:
        found = await self.call("GET", "/api/v1/kindergartens")
        return found.get("items", found) if isinstance(found, dict) else found

    async def policy(self) -> dict:
        """{"version", "policy": {"categories": [{"code", "rank", ...}], ...}}."""
        return await self.call("GET", "/api/v1/policy")

    async def application(self, who: Principal, application_id: str) -> dict | None:
        """The queue entry (with its live referral); None until the queue has
        taken application.submitted.v1 in."""
        return await self.call("GET", f"/api/v1/queue-entries/{seg(application_id)}", who, ok_missing=True)

    async def positions(self, who: Principal, application_id: str) -> list[dict]:
        return await self.call("GET", f"/api/v1/queue-entries/{seg(application_id)}/positions", who,
                               ok_missing=True) or []

    async def public_queue(self, kindergarten: str, cohort: int, language: str, *, offset: int = 0,
                           limit: int = 100) -> dict:
        """The anonymised queue of a kindergarten, cohort and language (public)."""
        return await self.call("GET", f"/api/v1/public/queues/{seg(kindergarten)}/{int(cohort)}/{seg(language)}",
                               params={"offset": offset, "limit": limit})

    async def figures(self, month: str | None = None) -> dict:
        """The country's and each district's published figures (public)."""
        return await self.call("GET", "/api/v1/public/figures", params={"month": month} if month else None)

    async def remove(self, who: Principal, application_id: str):
        return await self.call("POST", f"/api/v1/queue-entries/{seg(application_id)}/removal", who,
                               json={"reason": "asked by the parent"})

    async def family_copy(self, who: Principal, application_id: str) -> dict | None:
        """Everything the queue holds about the application (None: nothing)."""
        return await self.call("GET", f"/api/v1/queue-entries/{seg(application_id)}/family-copy", who,
                               ok_missing=True)

    async def family_looks(self, who: Principal) -> list[dict]:
        """The staff looks the queue recorded at the family's entries (no staff names)."""
        return await self.call("GET", f"/api/v1/families/{seg(who.family)}/looks", who)

    async def erase(self, who: Principal, application_id: str) -> dict:
        """The family's request to erase a closed application: the queue
        decides (409 with the legal reason's code when it must keep it)."""
        return await self.call("POST", f"/api/v1/queue-entries/{seg(application_id)}/erasure", who)


class NotificationsClient:
    """The parent's inbox in the notifications service, asked as the parent
    (family scope): another family's inbox is not theirs to see."""

    def __init__(self, http: ServiceClient):
        self.http = http

    async def inbox(self, who: Principal, lang: str | None = None) -> list[dict]:
        """services/notifications/api.py: {"parent_id", "unread", "messages": [...]}, each
        message in `lang` (the reader's) when given."""
        found = await self.http.call("GET", f"/api/v1/notifications/inbox/{seg(who.family)}", actor=who,
                                     ok_missing=True, params={"lang": lang} if lang else None)
        if isinstance(found, dict):
            found = found.get("messages", [])
        return found or []

    async def family_copy(self, who: Principal) -> dict:
        """The family's contacts and every message on every channel."""
        return await self.http.call("GET", f"/api/v1/notifications/families/{seg(who.family)}/copy", actor=who)

    async def mark_read(self, who: Principal, message_id: str) -> None:
        try:
            await self.http.call("POST", f"/api/v1/notifications/inbox/{seg(who.family)}/{seg(message_id)}/read",
                                 actor=who)
        except UpstreamError as exc:
            if exc.status == 404:   # not in this parent's inbox, whoever's it is
                raise UpstreamError(404, [{"field": "notification", "code": "not_found"}]) from exc
            raise


class VerificationClient:
    """What verification holds about the family, asked as the parent."""

    def __init__(self, http: ServiceClient):
        self.http = http

    async def family_copy(self, who: Principal) -> dict:
        return await self.http.call("GET", f"/api/v1/families/{seg(who.family)}/copy", actor=who)

    async def family_looks(self, who: Principal) -> list[dict]:
        """The staff looks verification recorded at the family's cases (no staff names)."""
        return await self.http.call("GET", f"/api/v1/families/{seg(who.family)}/looks", actor=who)
