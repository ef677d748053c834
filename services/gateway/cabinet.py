"""What the cabinet shows and what a parent may do there, the same for the
portal's pages and the JSON API. A parent sees only what their account
owns: registration answers for the verified parent only, the queue is asked
only about those applications (as that parent), and every act on an
application or a referral is checked against that list first."""
from __future__ import annotations

import asyncio

from pydantic import TypeAdapter

from kezek.trust import Principal, authenticate
from services.gateway import history, readmodel, referrals, views, vouchers
from services.gateway.apimodels import Cabinet
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


async def children(gw: Gateway, who: Principal, *, fresh: bool = False) -> dict:
    """The parent's own data and children, each with its queue entry and
    referrals: from the cabinet's read model (services/gateway/readmodel.py)
    when no event has changed the family since the services were last
    asked, else from the services (`fresh`: always from the services, as
    every act checks)."""
    copy = await _copy(gw, who, fresh=fresh)
    return render(copy, await gw.kindergarten_names(), _today(gw))


async def answer(gw: Gateway, who: Principal) -> bytes:
    """`children` as the JSON API answers it (`CABINET`'s JSON): made once
    per copy, reader's day and list of kindergarten names, and kept with the
    copy (a family polling its cabinet costs the query of its counters and
    nothing more); a new copy, day or list makes it again."""
    copy = await _copy(gw, who)
    names, today = await gw.kindergarten_names(), _today(gw)
    made = copy.answer
    if made is not None and made[0] == today and made[1] is names:
        return made[2]
    body = CABINET.dump_json(CABINET.validate_python(render(copy, names, today)), by_alias=True, exclude_unset=True)
    copy.answer = (today, names, body)
    return body


# The JSON API's answer (apimodels.Cabinet), as FastAPI makes it of a
# route's response_model with response_model_exclude_unset.
CABINET = TypeAdapter(Cabinet)


async def _copy(gw: Gateway, who: Principal, *, fresh: bool = False) -> readmodel.Copy:
    rm = gw.cabinet
    family = who.family or who.actor
    copy = None
    if rm.enabled and not fresh:
        copy = await rm.checked(family)
    if copy is None:
        copy = await _ask_services(gw, who, family)
        if rm.enabled and _keepable(copy):
            rm.keep(family, copy)
    return copy


def _today(gw: Gateway) -> str:
    return gw.clock().astimezone(gw.tz).date().isoformat()


async def _ask_services(gw: Gateway, who: Principal, family: str) -> readmodel.Copy:
    """What the services say now, with the counters read before asking them
    (an event consumed meanwhile makes the copy stale at once)."""
    rm = gw.cabinet
    stamps = await asyncio.to_thread(readmodel.versions, gw.sessions, [readmodel.parent_key(family)]) \
        if rm.enabled else {}
    me = await gw.registration.me(who)
    ids = [a["id"] for a in me["applications"]]
    if rm.enabled:
        stamps.update(await asyncio.to_thread(readmodel.versions, gw.sessions, map(readmodel.application_key, ids)))
    parts = await asyncio.gather(*(_queue_part(gw, who, a) for a in me["applications"]))
    decided = await asyncio.to_thread(vouchers.decisions, gw.sessions, ids)
    return readmodel.Copy(at=rm.clock(), stamps=stamps, me=me, parts=dict(zip(ids, parts)), decided=decided)


def _keepable(copy: readmodel.Copy) -> bool:
    """A copy with a service's outage in it (a queue entry not read) is not
    kept: the next read asks again."""
    return all(p["error"] is None for p in copy.parts.values())


async def _queue_part(gw: Gateway, who: Principal, app: dict) -> dict:
    """The queue's side of one application, as the services answer it. A
    live referral's window and buttons come from the queue's record of it
    (referrals.standing), not from its workflow: on a distribution day the
    worker is busy with thousands of workflows, and a query per read waited
    up to its 10 s limit (issue 15)."""
    part = {"raw": None, "positions": None, "history": None, "live": None, "standing": None, "error": None}
    try:
        raw = await gw.queue.application(who, app["id"])
        if raw is None:
            return part
        part["raw"] = raw
        part["positions"] = None if "positions" in raw else await gw.queue.positions(who, app["id"])
        if not raw.get("history"):
            found = raw.get("positions") if part["positions"] is None else part["positions"]
            first = next((p for p in found or [] if p.get("position")), None)
            if first is not None:
                await asyncio.to_thread(history.seen, gw.sessions, app["id"],
                                        str(first.get("kindergarten_id") or first.get("kindergarten") or ""),
                                        int(first["position"]))
            part["history"] = await asyncio.to_thread(history.points, gw.sessions, app["id"])
        live = views.live_referral(raw)
        if live is not None:
            part["live"] = live
            part["standing"] = referrals.standing(gw.calendar, live)
    except UpstreamError as exc:
        part.update(raw=None, error="unavailable" if exc.status >= 500 else "refused")
    return part


def render(copy: readmodel.Copy, names: dict[str, str], today: str) -> dict:
    """The cabinet from what the services said, with the kindergartens'
    names and the reader's day (ISO date) of now."""
    apps = []
    for app in copy.me["applications"]:
        part = copy.parts.get(app["id"])
        side = {"queue": None, "referrals": [], "queue_error": None}
        if part is not None and part["error"] is not None:
            side["queue_error"] = part["error"]
        elif part is not None and part["raw"] is not None:
            queue = views.entry(part["raw"], part["positions"], names)
            if not queue["history"] and part["history"] is not None:
                queue["history"] = part["history"]
            side["queue"] = queue
            if part["live"] is not None:
                side["referrals"] = [views.referral(part["live"], names, part["standing"], today)]
        out = {**app, **side}
        out["voucher"] = vouchers.view(out, copy.decided.get(app["id"]))
        apps.append(out)
    return {**copy.me, "applications": apps}


async def submitted(gw: Gateway, request) -> None:
    """An application was just submitted: if a parent is signed in on this
    browser or app, their cabinet is read from the services next time, so
    the new child is there before registration's event arrives."""
    who = await authenticate(request)
    if who.authenticated and who.family:
        await asyncio.to_thread(changed, gw, who)


def changed(gw: Gateway, who: Principal | None = None, application_id: str | None = None) -> None:
    """The gateway has just acted for the family (blocking: call it in a
    thread): its cabinet is read from the services next time."""
    if not gw.cabinet.enabled:
        return
    keys = ([readmodel.parent_key(who.family or who.actor)] if who is not None else []) \
        + ([readmodel.application_key(application_id)] if application_id else [])
    readmodel.bump_now(gw.sessions, keys)


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
    me = await children(gw, who, fresh=True)
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
    app, _ = await own_referral(gw, who, referral_id, action)
    act = gw.referrals.cancel if action == "cancel" else gw.referrals.extend
    try:
        return await act(referral_id, who.actor)
    finally:
        await asyncio.to_thread(changed, gw, who, app["id"])


async def remove_application(gw: Gateway, who: Principal, application_id: str) -> None:
    await own_application(gw, who, application_id)
    try:
        await gw.queue.remove(who, application_id)
        await gw.registration.mark_removed(who, application_id)
    finally:
        await asyncio.to_thread(changed, gw, who, application_id)


async def inbox(gw: Gateway, who: Principal, lang: str | None = None) -> tuple[list[dict], bool]:
    """The parent's messages, each in `lang` (the reader's language)."""
    try:
        return await gw.notifications.inbox(who, lang), True
    except UpstreamError:
        return [], False
