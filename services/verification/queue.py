"""The queue service as the staff pages reach it (issue 19): its HTTP API
with a service token made by this service for the member of staff signed in
(kezek.client; the queue checks the role and keeps the call within the
kindergarten or district, 404 outside). The queue keeps every rule of places,
schedules and closing; these are only the calls.

`QueueDirectory` is the same register as `kezek staff-add` asks it from the
console (the `cli` caller, for an administrator): which kindergartens and
districts exist."""
from __future__ import annotations

from typing import Any

from kezek.client import ServiceClient, SyncServiceClient, UpstreamError, seg
from kezek.trust import Principal, ServiceKeys, staff_principal
from services.verification.usecases.staff import ScopeUnchecked

API = "/api/v1"


class QueueDesk:
    """The calls of the kindergarten and district pages, each for `actor`
    (the verified member of staff)."""

    def __init__(self, base_url: str, keys: ServiceKeys, *, transport=None, timeout: float = 15.0):
        self.http = ServiceClient(base_url, keys=keys, caller="verification", audience="queue",
                                  transport=transport, timeout=timeout)

    async def _call(self, method: str, path: str, actor: Principal | None, **kw) -> Any:
        return await self.http.call(method, API + path, actor=actor, **kw)

    # ---- kindergartens

    async def kindergarten(self, actor: Principal, kg: str) -> dict:
        return await self._call("GET", f"/kindergartens/{seg(kg)}", actor)

    async def kindergartens(self, actor: Principal, district: str) -> list[dict]:
        return await self._call("GET", "/kindergartens", actor, params={"district": district, "closed": "true"})

    async def save_kindergarten(self, actor: Principal, kg: str, body: dict) -> dict:
        return await self._call("PUT", f"/kindergartens/{seg(kg)}", actor, json=body)

    async def close(self, actor: Principal, kg: str, reason: str) -> dict:
        return await self._call("POST", f"/kindergartens/{seg(kg)}/closure", actor, json={"reason": reason})

    async def districts(self, actor: Principal) -> list[dict]:
        return await self._call("GET", "/districts", actor)

    async def policy(self, actor: Principal) -> dict:
        return (await self._call("GET", "/policy", actor))["policy"]

    # ---- places and the schedule

    async def places(self, actor: Principal, kg: str | None = None) -> list[dict]:
        return await self._call("GET", "/places", actor, params={"kindergarten": kg} if kg else None)

    async def publish(self, actor: Principal, kg: str, body: dict) -> dict:
        return await self._call("POST", f"/kindergartens/{seg(kg)}/places", actor, json=body)

    async def withdraw(self, actor: Principal, kg: str, body: dict) -> dict:
        return await self._call("POST", f"/kindergartens/{seg(kg)}/places/withdrawal", actor, json=body)

    async def scheduled(self, actor: Principal, *, district: str | None = None,
                        kindergarten: str | None = None) -> list[dict]:
        params = {k: v for k, v in (("district", district), ("kindergarten", kindergarten)) if v}
        return await self._call("GET", "/places/scheduled", actor, params=params)

    async def publication(self, actor: Principal, publication: int) -> dict:
        return await self._call("GET", f"/publications/{int(publication)}", actor)

    async def cancel_publication(self, actor: Principal, publication: int) -> dict:
        return await self._call("POST", f"/publications/{int(publication)}/cancellation", actor)

    # ---- referrals and children (personal data: the queue records the look)

    async def entry_looks(self, actor: Principal, application_id: str) -> list[dict]:
        """The staff looks the queue recorded at a child's entry (a supervisor's list)."""
        rows = await self._call("GET", f"/queue-entries/{seg(application_id)}/audit", actor,
                                params={"limit": 1000})
        return [r for r in rows if r.get("kind") == "look"]

    async def referrals(self, actor: Principal, kg: str, status: str = "live") -> list[dict]:
        return await self._call("GET", f"/kindergartens/{seg(kg)}/referrals", actor, params={"status": status})

    async def referral(self, actor: Principal, kg: str, referral_id: str) -> dict:
        return await self._call("GET", f"/kindergartens/{seg(kg)}/referrals/{seg(referral_id)}", actor)

    async def children(self, actor: Principal, kg: str) -> list[dict]:
        return await self._call("GET", f"/kindergartens/{seg(kg)}/children", actor)

    async def leave(self, actor: Principal, kg: str, application_id: str, reason: str) -> dict:
        return await self._call("POST", f"/kindergartens/{seg(kg)}/children/{seg(application_id)}/leaving", actor,
                                json={"reason": reason})

    # ---- figures (public)

    async def figures(self, district: str, month: str | None = None) -> dict:
        return await self._call("GET", f"/public/figures/{seg(district)}", None,
                                params={"month": month} if month else None)


class QueueDirectory:
    """The register of kindergartens, asked from the console (`cli`, for an
    administrator) by `kezek staff-add`."""

    ADMIN = staff_principal("console", "admin")

    def __init__(self, base_url: str, keys: ServiceKeys, *, transport=None):
        self.http = SyncServiceClient(base_url, keys=keys, caller="cli", audience="queue", transport=transport)

    def kindergarten(self, kindergarten: str) -> dict | None:
        try:
            found = self.http.call("GET", f"{API}/kindergartens/{seg(kindergarten)}", actor=self.ADMIN,
                                   ok_missing=True)
        except UpstreamError as exc:
            raise ScopeUnchecked(exc.detail or f"the queue answered {exc.status}") from None
        return None if found is None or found.get("closed_at") else found

    def district_exists(self, district: str) -> bool:
        try:
            known = self.http.call("GET", f"{API}/districts", actor=self.ADMIN)
        except UpstreamError as exc:
            raise ScopeUnchecked(exc.detail or f"the queue answered {exc.status}") from None
        return any(d["district"] == district and d["open"] for d in known)

    def close(self) -> None:
        self.http.close()
