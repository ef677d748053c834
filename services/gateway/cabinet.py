"""What the cabinet shows and what a parent may do there, the same for the
portal's pages and the JSON API. A parent sees only what their account
owns: registration answers for the verified parent only, the queue is asked
only about those applications (as that parent), and every act on an
application or a referral is checked against that list first."""
from __future__ import annotations

import asyncio
from datetime import datetime

from kezek.trust import Principal
from services.gateway import history, views, vouchers
from services.gateway.clients import UpstreamError
from services.gateway.context import Gateway


class NotYours(UpstreamError):
    """Not the parent's own (or not there at all): "not found"."""

    def __init__(self, field: str):
        super().__init__(404, [{"field": field, "code": "not_found"}])


class NotAllowedNow(UpstreamError):
    """The rules do not offer this act on the referral now."""

    def __init__(self):
        super().__init__(409, [{"field": "referral", "code": "refused"}])


async def children(gw: Gateway, who: Principal) -> dict:
    """The parent's own data and children, each with its queue entry and
    referrals."""
    me = await gw.registration.me(who)
    apps = me["applications"]
    names = await gw.kindergarten_names()
    today = datetime.now(gw.tz).date().isoformat()
    sides = await asyncio.gather(*(_queue_side(gw, who, a, names, today) for a in apps))
    decided = await asyncio.to_thread(vouchers.decisions, gw.sessions, [a["id"] for a in apps])
    for app, side in zip(apps, sides):
        app.update(side)
        app["voucher"] = vouchers.view(app, decided.get(app["id"]))
    return me


async def _queue_side(gw: Gateway, who: Principal, app: dict, names: dict[str, str], today: str) -> dict:
    out = {"queue": None, "referrals": [], "queue_error": None}
    try:
        raw = await gw.queue.application(who, app["id"])
        if raw is None:
            return out
        positions = None if "positions" in raw else await gw.queue.positions(who, app["id"])
        out["queue"] = views.entry(raw, positions, names)
        if not out["queue"]["history"]:
            first = next((p for p in out["queue"]["positions"] if p.get("position")), None)
            if first is not None:
                await asyncio.to_thread(history.seen, gw.sessions, app["id"], first["kindergarten_id"],
                                        int(first["position"]))
            out["queue"]["history"] = await asyncio.to_thread(history.points, gw.sessions, app["id"])
        live = views.live_referral(raw)
        if live is not None:
            status = await gw.referrals.status(str(live.get("referral_id") or live.get("id")))
            out["referrals"] = [views.referral(live, names, status, today)]
    except UpstreamError as exc:
        out["queue_error"] = "unavailable" if exc.status >= 500 else "refused"
    return out


async def own_application(gw: Gateway, who: Principal, application_id: str) -> dict:
    me = await gw.registration.me(who)
    found = next((a for a in me["applications"] if a["id"] == application_id), None)
    if found is None:
        raise NotYours("application")
    return found


async def own_referral(gw: Gateway, who: Principal, referral_id: str, action: str) -> tuple[dict, dict]:
    """The application and referral, if the referral is the parent's own and
    the rules allow `action` on it now (else 404, or 409 for an act the
    rules refuse)."""
    me = await children(gw, who)
    for app in me["applications"]:
        for r in app["referrals"]:
            if str(r.get("referral_id") or r.get("id")) == referral_id:
                if action not in r.get("actions", []):
                    raise NotAllowedNow()
                return app, r
    raise NotYours("referral")


async def act_on_referral(gw: Gateway, who: Principal, referral_id: str, action: str) -> dict:
    """Cancel or extend: the referral's workflow decides (its refusal comes
    back in its own words); the parent is the verified actor."""
    await own_referral(gw, who, referral_id, action)
    act = gw.referrals.cancel if action == "cancel" else gw.referrals.extend
    return await act(referral_id, who.actor)


async def remove_application(gw: Gateway, who: Principal, application_id: str) -> None:
    await own_application(gw, who, application_id)
    await gw.queue.remove(who, application_id)
    await gw.registration.mark_removed(who, application_id)


async def inbox(gw: Gateway, who: Principal, lang: str | None = None) -> tuple[list[dict], bool]:
    """The parent's messages, each in `lang` (the reader's language)."""
    try:
        return await gw.notifications.inbox(who, lang), True
    except UpstreamError:
        return [], False
