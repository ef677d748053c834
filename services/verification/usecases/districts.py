"""A district office's desk (DOMAIN.md section 3, issue 19): the district's
kindergartens (created, edited, closed: the queue's rules, e.g. a
kindergarten closes only when nothing is held or taken there), the
publication schedule (places of a kindergarten, birth year, language and
optionally category at a date and time, listed as the queue orders them:
older birth years and the extraordinary right first), and the district's
figures with their charts."""
from __future__ import annotations

from collections.abc import Iterable

from kezek import charts
from services.verification import domain as d
from services.verification.usecases.context import NotFound, StaffView
from services.verification.usecases.desk import Desk, asking_the_queue
from services.verification.usecases.kindergartens import KindergartenDesk, _moment

P = d.Permission


class DistrictOffice(Desk):
    async def districts(self, actor: StaffView) -> list[dict]:
        """The districts a member of staff reaches: their own, or every one."""
        async with asking_the_queue():
            known = await self.queue.districts(actor.principal)
        if d.all_districts(actor.role):
            return known
        return [x for x in known if x["district"] == actor.district] or [
            {"district": actor.district, "kindergartens": 0, "open": 0}]

    async def page(self, actor: StaffView, district: str) -> dict:
        await self.district_in_scope(actor, district, "district.view")
        p = actor.principal
        async with asking_the_queue():
            kgs = await self.queue.kindergartens(p, district)
            pools = await self.queue.places(p)
        ids = {k["id"] for k in kgs}
        totals: dict[str, dict] = {k: {"free": 0, "held": 0, "taken": 0} for k in ids}
        for pool in pools:
            if pool["kindergarten"] in ids:
                t = totals[pool["kindergarten"]]
                t["free"] += pool["free"]
                t["held"] += pool["held"]
                t["taken"] += pool["enrolled"]
        return {"district": district,
                "kindergartens": [{**k, **totals[k["id"]], "closed_at": self.ctx.local(_moment(k.get("closed_at")))}
                                  for k in sorted(kgs, key=lambda k: (k.get("closed_at") is not None, k["id"]))],
                "can_manage": actor.can(P.DISTRICT_MANAGE), "taught": d.TAUGHT_LANGUAGES}

    async def kindergarten(self, actor: StaffView, district: str, kg: str) -> dict:
        await self.district_in_scope(actor, district, "kindergarten.edit")
        found = await self.kindergarten_in_scope(actor, kg, "kindergarten.edit")
        if found["district"] != district:
            await self.denied(actor, "kindergarten.edit", f"kindergarten:{kg}")
        return found

    async def create(self, actor: StaffView, district: str, form: dict, languages: Iterable[str]) -> dict:
        await self.district_in_scope(actor, district, "kindergarten.create")
        body = d.validate_kindergarten(form, list(languages), district, new=True)
        kid = body.pop("id")
        if await self._taken(actor, kid):
            # An id in use (in any district) is refused, never overwritten.
            raise d.Refused([d.err("id", "id_taken")])
        return await self.audited(actor, "kindergarten.create", f"kindergarten:{kid}",
                                  lambda: self.queue.save_kindergarten(actor.principal, kid, body),
                                  district=district, name=body["name"])

    async def _taken(self, actor: StaffView, kid: str) -> bool:
        try:
            async with asking_the_queue():
                await self.queue.kindergarten(actor.principal, kid)
        except NotFound:
            return False
        return True

    async def edit(self, actor: StaffView, district: str, kg: str, form: dict, languages: Iterable[str]) -> dict:
        await self.kindergarten(actor, district, kg)
        body = d.validate_kindergarten(form, list(languages), district, new=False)
        return await self.audited(actor, "kindergarten.edit", f"kindergarten:{kg}",
                                  lambda: self.queue.save_kindergarten(actor.principal, kg, body),
                                  district=district, name=body["name"], languages=body["languages"])

    async def close(self, actor: StaffView, district: str, kg: str, reason: str = "") -> dict:
        reason = d.validate_reason(reason)
        await self.kindergarten(actor, district, kg)
        return await self.audited(actor, "kindergarten.close", f"kindergarten:{kg}",
                                  lambda: self.queue.close(actor.principal, kg, reason),
                                  district=district, reason=reason or None)

    # ------------------------------------------------------------ the schedule

    async def schedule(self, actor: StaffView, district: str) -> dict:
        await self.district_in_scope(actor, district, "schedule.view")
        p = actor.principal
        async with asking_the_queue():
            kgs = await self.queue.kindergartens(p, district)
            scheduled = await self.queue.scheduled(p, district=district)
            policy = await self.queue.policy(p)
        today = self.ctx.today()
        names = {k["id"]: k["name"] for k in kgs}
        rank = {c["code"]: c["rank"] for c in policy["categories"]}
        return {
            "district": district, "today": today,
            "scheduled": [{**x, "publish_at": self.ctx.local(_moment(x["publish_at"])),
                           "name": names.get(x["kindergarten"], x["kindergarten"])} for x in scheduled],
            "kindergartens": [k for k in kgs if not k.get("closed_at")],
            "categories": sorted(rank, key=lambda c: rank[c]),
            "cohorts": list(range(today.year - 8, today.year + 1)), "default_cohort": today.year - 3,
            "teaches": sorted({lang for k in kgs for lang in (k["languages"] or d.TAUGHT_LANGUAGES)}),
            "can_schedule": actor.can(P.DISTRICT_SCHEDULE),
        }

    async def schedule_places(self, actor: StaffView, district: str, form: dict) -> dict:
        """Places of one of the district's kindergartens on the schedule."""
        await self.district_in_scope(actor, district, "schedule.add")
        kg = (form.get("kindergarten") or "").strip()
        if not kg:
            raise d.Refused([d.err("kindergarten", "required")])
        desk = KindergartenDesk(self.ctx, self._queue)
        found = await self.kindergarten_in_scope(actor, kg, "schedule.add")
        if found["district"] != district:
            await self.denied(actor, "schedule.add", f"kindergarten:{kg}")
        body = await desk.places_body(actor, found, form, scheduled=True)
        return await self.audited(actor, "schedule.add", f"kindergarten:{kg}",
                                  lambda: self.queue.publish(actor.principal, kg, body), district=district,
                                  **{k: v for k, v in body.items() if v is not None})

    async def cancel(self, actor: StaffView, district: str, publication: int) -> dict:
        await self.district_in_scope(actor, district, "schedule.cancel")
        pub = await self.found_or_denied(actor, "schedule.cancel", f"publication:{publication}",
                                         lambda: self.queue.publication(actor.principal, publication))
        found = await self.kindergarten_in_scope(actor, pub["kindergarten"], "schedule.cancel")
        if found["district"] != district:
            await self.denied(actor, "schedule.cancel", f"publication:{publication}")
        return await self.audited(actor, "schedule.cancel", f"publication:{publication}",
                                  lambda: self.queue.cancel_publication(actor.principal, publication),
                                  district=district, kindergarten=pub["kindergarten"])

    # ------------------------------------------------------------ figures

    async def figures(self, actor: StaffView, district: str, month: str | None = None) -> dict:
        await self.district_in_scope(actor, district, "figures.view")
        async with asking_the_queue():
            f = await self.queue.figures(district, month)
        return {"district": district, "figures": f, "charts": figure_charts(f),
                "month": f["month"], "months": _months(self.ctx.today())}


def figure_charts(f: dict) -> dict:
    """The three charts of a district's (or the country's) figures: waiting
    children by birth year and language, the register of places, and how
    the month's referrals ended."""
    size = {"width": 560, "label_width": 220}
    waiting = charts.bars([(f"{w['cohort']} · {w['language']}", w["children"], f"lang-{w['language']}")
                           for w in f["waiting"]], **size)
    places = charts.bars([("free", f["places"]["free"], "free"), ("held", f["places"]["held"], "held"),
                          ("taken", f["places"]["taken"], "taken"),
                          ("published", f["places"]["published"], "published")], **size)
    r = f["referrals"]
    referrals = charts.bars([(k, r[k], k) for k in ("issued", "enrolled", "expired", "cancelled", "rejected",
                                                    "left")], **size)
    return {"waiting": waiting, "places": places, "referrals": referrals}


def _months(today) -> list[str]:
    """This month and the eleven before it, for the month picker."""
    y, m = today.year, today.month
    out = []
    for _ in range(12):
        out.append(f"{y:04d}-{m:02d}")
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return out

