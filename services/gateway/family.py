"""The family's own copy (DOMAIN.md section 7): everything Kezek holds about
the signed-in parent's family, gathered from each service over its internal
API with a service token acting as that parent (family scope: no service
answers about another family), and the family's request to erase a closed
application (the queue decides: kezek/retention.py); and which offices
looked at the family's data (`looks`: the queue's and verification's
records of staff looks, when, the role and the office, never who).

The copy is complete or it is not given: a service that does not answer is
a 503, never a copy with a part silently missing. Each download is recorded
in the gateway's audit trail."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import sqlalchemy as sa

from kezek.trust import Principal
from services.gateway.context import Gateway
from services.gateway.models import PositionPoint, VoucherDecision, trail

FORMAT = "kezek.family-copy.v1"


def _gateway_side(gw: Gateway, app_ids: list[str]) -> dict[str, dict]:
    """What the gateway itself keeps: the position history and voucher decisions."""
    with gw.sessions() as s:
        points = s.execute(sa.select(PositionPoint).where(PositionPoint.application_id.in_(app_ids))
                           .order_by(PositionPoint.at)).scalars().all() if app_ids else []
        decisions = s.scalars(sa.select(VoucherDecision).where(VoucherDecision.application_id.in_(app_ids))).all() \
            if app_ids else []
    out: dict[str, dict] = {i: {"position_history": [], "voucher_decision": None} for i in app_ids}
    for p in points:
        at = p.at if p.at.tzinfo else p.at.replace(tzinfo=UTC)
        out[p.application_id]["position_history"].append(
            {"at": at.isoformat(), "kindergarten_id": p.kindergarten_id, "position": p.position})
    for d in decisions:
        out[d.application_id]["voucher_decision"] = {
            "decision": d.decision, "decision_number": d.decision_number, "benefit_type": d.benefit_type,
            "reason": d.reason, "decided_at": d.decided_at.isoformat()}
    return out


def _record(gw: Gateway, who: Principal, action: str, subject: str, details: dict | None = None) -> None:
    with gw.sessions() as s, s.begin():
        trail.record(s, who, action, subject, details=details)


async def copy(gw: Gateway, who: Principal) -> dict:
    """The family's copy, as one JSON-ready object."""
    reg = await gw.registration.family_copy(who)
    app_ids = [a["id"] for a in reg["applications"]]
    queue_parts, notes, cases = await asyncio.gather(
        asyncio.gather(*(gw.queue.family_copy(who, i) for i in app_ids)),
        gw.notifications.family_copy(who), gw.verification.family_copy(who))
    own = await asyncio.to_thread(_gateway_side, gw, app_ids)
    applications = []
    for app, queue in zip(reg["applications"], queue_parts):
        i = app["id"]
        applications.append({
            "id": i,
            "registration": app,
            "queue": queue,
            "verification": {
                "applicant": next((a for a in cases["applicants"] if a["application_id"] == i), None),
                "referrals": [r for r in cases["referrals"] if r["application_id"] == i],
                "certificates": [c for c in cases["certificates"]
                                 if c["referral_id"] in {r["referral_id"] for r in cases["referrals"]
                                                         if r["application_id"] == i}],
                "vouchers": [v for v in cases["vouchers"] if v["application_id"] == i],
            },
            "portal": own[i],
        })
    await asyncio.to_thread(_record, gw, who, "family.copy_downloaded", f"account:{who.family}",
                            {"applications": len(applications)})
    return {
        "format": FORMAT, "generated_at": datetime.now(UTC).isoformat(),
        "parent": reg["account"],
        "applications": applications,
        "notifications": notes,
        "decisions": cases["decisions"],
        "history": {"registration": reg["history"], "verification": cases["history"],
                    "queue": {a["id"]: (a["queue"] or {}).get("history", []) for a in applications}},
    }


async def erase(gw: Gateway, who: Principal, application_id: str) -> dict:
    """The family's request: the queue decides and tells every service; a
    refusal comes back with its legal reason (UpstreamError, 409)."""
    from services.gateway.cabinet import changed

    try:
        return await gw.queue.erase(who, application_id)
    finally:
        await asyncio.to_thread(changed, gw, who, application_id)


async def looks(gw: Gateway, who: Principal) -> list[dict]:
    """Every staff look at the family's data the services recorded, newest first."""
    queue, verification = await asyncio.gather(gw.queue.family_looks(who), gw.verification.family_looks(who))
    found = [{**x, "service": x.get("service") or name} for name, part in
             (("queue", queue), ("verification", verification)) for x in part or []]
    return sorted(found, key=lambda x: x["at"], reverse=True)
