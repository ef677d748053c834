"""HTTP clients of the services behind the gateway. The gateway imports no
other service's code: it speaks to their /api/v1 over HTTP, passing the
parent's session token to registration and the request id to everyone."""
from __future__ import annotations

from typing import Any

import httpx
import structlog

from kezek.client import ServiceClient as SignedServiceClient
from kezek.client import UpstreamError  # noqa: F401  (one error type for every upstream call)
from kezek.client import seg
from kezek.trust import Principal, ServiceKeys, parent_principal


class ServiceClient:
    def __init__(self, base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 10.0):
        self._config = dict(base_url=base_url.rstrip("/"), transport=transport, timeout=timeout)
        self.http = httpx.AsyncClient(**self._config)

    async def aclose(self) -> None:
        await self.http.aclose()

    def _open(self) -> httpx.AsyncClient:
        # An app restarted in the same process (tests) gets a fresh pool.
        if self.http.is_closed:
            self.http = httpx.AsyncClient(**self._config)
        return self.http

    async def call(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                   params: dict | None = None, ok_missing: bool = False, headers: dict | None = None) -> Any:
        headers = dict(headers or {})
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            headers["x-request-id"] = request_id
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            r = await self._open().request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise UpstreamError(503, detail=f"{self.http.base_url}: {exc.__class__.__name__}") from exc
        if r.status_code == 404 and ok_missing:
            return None
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {}
            errors = body.get("errors") if isinstance(body, dict) else None
            detail = body.get("detail") if isinstance(body, dict) else ""
            raise UpstreamError(r.status_code, errors if isinstance(errors, list) else [], str(detail or ""))
        if r.status_code == 204 or not r.content:
            return None
        return r.json()


class RegistrationClient(ServiceClient):
    async def regions(self):
        return await self.call("GET", "/api/v1/address/regions")

    async def address_tree(self):
        return await self.call("GET", "/api/v1/address/tree")

    async def districts(self, region: str):
        return await self.call("GET", f"/api/v1/address/regions/{region}/districts")

    async def settlements(self, district: str):
        return await self.call("GET", f"/api/v1/address/districts/{district}/settlements")

    async def streets(self, settlement: str, q: str = ""):
        return await self.call("GET", f"/api/v1/address/settlements/{settlement}/streets", params={"q": q})

    async def start_draft(self, locale: str):
        return await self.call("POST", "/api/v1/drafts", json={"locale": locale})

    async def draft(self, token: str):
        return await self.call("GET", f"/api/v1/drafts/{token}", ok_missing=True)

    async def save_child(self, token: str, data: dict):
        return await self.call("PUT", f"/api/v1/drafts/{token}/child", json=data)

    async def save_parent(self, token: str, data: dict):
        return await self.call("PUT", f"/api/v1/drafts/{token}/parent", json=data)

    async def request_code(self, token: str, locale: str):
        return await self.call("POST", f"/api/v1/drafts/{token}/email-code", json={"locale": locale})

    async def verify_code(self, token: str, code: str):
        return await self.call("POST", f"/api/v1/drafts/{token}/email-code/verify", json={"code": code})

    async def submit(self, token: str, data: dict):
        return await self.call("POST", f"/api/v1/drafts/{token}/submit", json=data)

    async def check_activation(self, token: str):
        return await self.call("GET", f"/api/v1/activation/{token}")

    async def activate(self, token: str, password: str):
        return await self.call("POST", "/api/v1/activation", json={"token": token, "password": password})

    async def resend_activation(self, email: str, locale: str | None = None):
        return await self.call("POST", "/api/v1/activation/resend", json={"email": email, "locale": locale})

    async def login(self, login: str, password: str, kind: str):
        return await self.call("POST", "/api/v1/sessions", json={"login": login, "password": password, "kind": kind})

    async def identify(self, token: str):
        return await self.call("GET", "/api/v1/sessions/current", token=token)

    async def logout(self, token: str):
        return await self.call("DELETE", "/api/v1/sessions/current", token=token)

    async def me(self, token: str):
        return await self.call("GET", "/api/v1/me", token=token)

    async def mark_removed(self, token: str, application_id: str):
        return await self.call("POST", f"/api/v1/me/applications/{application_id}/removed", token=token)

    async def sso_start(self, redirect_uri: str):
        return await self.call("POST", "/api/v1/sso/tunduk/start", json={"redirect_uri": redirect_uri})

    async def sso_finish(self, state: str, code: str, kind: str):
        return await self.call("POST", "/api/v1/sso/tunduk/finish", json={"state": state, "code": code, "kind": kind})


class QueueClient(SignedServiceClient):
    """The queue service's API (services/queue/api/), with the gateway's
    service token. The gateway asks only about applications it has already
    checked belong to the parent, and acts and reads as that parent."""

    def __init__(self, base_url: str, *, keys: ServiceKeys, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 10.0):
        super().__init__(base_url, keys=keys, caller="gateway", audience="queue", transport=transport,
                         timeout=timeout)

    async def kindergartens(self) -> list[dict]:
        found = await self.call("GET", "/api/v1/kindergartens")
        return found.get("items", found) if isinstance(found, dict) else found

    async def policy(self) -> dict:
        """{"version", "policy": {"categories": [{"code", "rank", ...}], ...}}."""
        return await self.call("GET", "/api/v1/policy")

    async def application(self, application_id: str, parent: Principal) -> dict | None:
        """The queue entry (with its live referral); None until the queue has
        taken application.submitted.v1 in."""
        return await self.call("GET", f"/api/v1/queue-entries/{seg(application_id)}", actor=parent,
                               ok_missing=True)

    async def positions(self, application_id: str, parent: Principal) -> list[dict]:
        return await self.call("GET", f"/api/v1/queue-entries/{seg(application_id)}/positions",
                               actor=parent, ok_missing=True) or []

    async def remove(self, application_id: str, actor: str):
        """`actor`: "parent:<account>", as the gateway verified the session."""
        return await self.call("POST", f"/api/v1/queue-entries/{seg(application_id)}/removal",
                               json={"reason": "asked by the parent"},
                               actor=parent_principal(actor.removeprefix("parent:")))


class NotificationsClient(SignedServiceClient):
    """services/notifications/api/inbox.py, called as the signed-in parent
    (a service token for `parent:<account>`): notifications answers only
    that parent's inbox."""

    def __init__(self, base_url: str, *, keys: ServiceKeys, transport: httpx.AsyncBaseTransport | None = None,
                 timeout: float = 10.0):
        super().__init__(base_url, keys=keys, caller="gateway", audience="notifications", transport=transport,
                         timeout=timeout)

    async def inbox(self, parent_id: str) -> list[dict]:
        """{"parent_id", "unread", "messages": [...]}: the messages."""
        found = await self.call("GET", f"/api/v1/notifications/inbox/{seg(parent_id)}",
                                actor=parent_principal(parent_id), ok_missing=True)
        if isinstance(found, dict):
            found = found.get("messages", [])
        return found or []

    async def mark_read(self, parent_id: str, message_id: str) -> None:
        try:
            await self.call("POST", f"/api/v1/notifications/inbox/{seg(parent_id)}/{seg(message_id)}/read",
                            actor=parent_principal(parent_id))
        except UpstreamError as exc:
            if exc.status == 404:   # not in this parent's inbox, whoever's it is
                raise UpstreamError(404, [{"field": "notification", "code": "not_found"}]) from exc
            raise
