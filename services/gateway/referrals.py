"""A parent's acts on a referral ("Cancel direction", "Extend direction")
reach the referral's workflow as Temporal updates (workflows/contracts.py);
the workflow checks them against its own clock and state, and its refusal
comes back in its own words. The status query tells the cabinet which
buttons the rules allow right now."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

from services.gateway.clients import UpstreamError
from workflows import contracts as c
from workflows.client import LazyClient, ReferralNotStarted, ReferralRefused, ReferralUnavailable


class Referrals(Protocol):
    async def status(self, referral_id: str) -> dict | None: ...
    async def cancel(self, referral_id: str, actor: str) -> dict: ...
    async def extend(self, referral_id: str, actor: str) -> dict: ...


def refused(reason: str, status: int = 409, code: str = "", params: dict | None = None) -> UpstreamError:
    """The workflow's refusal: its code and parameters for the pages (in the
    reader's language, services/gateway/messages.py), its words for the rest."""
    return UpstreamError(status, [{"field": "referral", "code": code, "params": dict(params or {}),
                                   "message": reason}], reason, code)


class TemporalReferrals:
    """Referrals over a Temporal client connected on first use, so the
    gateway starts and serves pages while Temporal is down."""

    def __init__(self, address: str, namespace: str = "default", *, timeout: timedelta = timedelta(seconds=10)):
        self.temporal = LazyClient(address, namespace, timeout=timeout)

    async def status(self, referral_id: str) -> dict | None:
        """None when the workflow cannot say (gone, or Temporal unreachable):
        the cabinet then offers no extension, the safe side."""
        try:
            found = await self.temporal.status(referral_id)
        except Exception:
            return None
        return found.model_dump(mode="json")

    async def cancel(self, referral_id: str, actor: str) -> dict:
        return await self._update(referral_id, c.CANCEL, c.CancelReferral(acted_at=datetime.now(UTC), actor=actor))

    async def extend(self, referral_id: str, actor: str) -> dict:
        return await self._update(referral_id, c.EXTEND, c.ExtendReferral(acted_at=datetime.now(UTC), actor=actor))

    async def _update(self, referral_id: str, name: str, act: c.Act) -> dict:
        try:
            result = await self.temporal.update(referral_id, name, act)
        except ReferralRefused as exc:
            if exc.closed:
                raise refused("this direction is no longer open", 404, "referral_closed") from exc
            raise refused(exc.reason, code=exc.code or "", params=exc.params) from exc
        except ReferralNotStarted as exc:
            # Issued moments ago, its workflow not started yet: 503 with
            # Retry-After (the answer takes it from the error's seconds).
            raise UpstreamError(503, [{"field": "referral", "code": "referral_not_started",
                                       "params": {"seconds": exc.retry_after}, "message": str(exc)}],
                                str(exc), "referral_not_started") from exc
        except ReferralUnavailable as exc:
            raise UpstreamError(503, detail=str(exc)) from exc
        return result.model_dump(mode="json")
