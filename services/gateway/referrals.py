"""A parent's acts on a referral ("Cancel direction", "Extend direction")
reach the referral's workflow as Temporal updates (workflows/contracts.py);
the workflow checks them against its own clock and state, and its refusal
comes back in its own words. Which buttons the cabinet offers comes from
the queue's books (`standing`), not from the workflow: a parent's read asks
Temporal nothing."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from services.gateway.clients import UpstreamError
from workflows import contracts as c
from workflows import rules
from workflows.client import LazyClient, ReferralNotStarted, ReferralRefused, ReferralUnavailable

if TYPE_CHECKING:
    from kezek.calendar import WorkingCalendar


def standing(cal: WorkingCalendar, referral: dict) -> dict:
    """Where a referral stands, from the queue's record of it (its
    application view's `referral`): the workflow records its state, the end
    of its running window and its one extension there with every fact it
    publishes, and the allocation and the import write them at issue. The
    fields the workflow's status query gave the cabinet: `state`, `window`,
    `deadline` (ISO, the country's local time), `extended` and
    `extension_day` (ISO date; None outside the confirmation window or once
    extended). The extension day is the window's last working day, as the
    workflow reckons it (rules.extension_day_before: for a new referral the
    same day as rules.extension_day)."""
    try:
        state = rules.ReferralState(referral.get("state") or "")
    except ValueError:
        state = None
    window = rules.window_of(state) if state is not None else None
    found = referral.get("deadline")
    deadline = cal.local(datetime.fromisoformat(found) if isinstance(found, str) else found) if found else None
    extended = bool(referral.get("extended"))
    day = rules.extension_day_before(cal, deadline) \
        if window == "confirmation" and not extended and deadline is not None else None
    return {"state": state.value if state is not None else referral.get("state"), "window": window,
            "deadline": deadline.isoformat() if deadline is not None else None, "extended": extended,
            "extension_day": day.isoformat() if day is not None else None}


class Referrals(Protocol):
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
