"""A kindergarten's desk (DOMAIN.md section 3, issue 19): its groups (cohort
and language, from the queue's place pools), publishing and withdrawing its
free places, the referrals to it with their deadlines, recording an
enrolment or a family that declined in person (updates of the referral's
workflow, refused with the workflow's reason), its enrolled children and a
child leaving (the queue's use case: the place is free at once)."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from services.verification import domain as d
from services.verification.usecases.context import StaffView
from services.verification.usecases.desk import Desk, asking_the_queue
from workflows import contracts as wc
from workflows.client import ReferralRefused, ReferralUnavailable

P = d.Permission


def groups(pools: list[dict]) -> list[dict]:
    """The kindergarten's groups: one per birth year and language, with its
    places (free, held by a referral, taken by an enrolled child) and those
    reserved for a category."""
    out: dict[tuple[int, str], dict] = {}
    for p in pools:
        g = out.setdefault((p["cohort"], p["language"]), {
            "cohort": p["cohort"], "language": p["language"], "free": 0, "held": 0, "taken": 0, "reserved": []})
        g["free"] += p["free"]
        g["held"] += p["held"]
        g["taken"] += p["enrolled"]
        if p.get("for_category") and (p["free"] or p["held"] or p["enrolled"]):
            g["reserved"].append({"category": p["for_category"], "free": p["free"], "held": p["held"],
                                  "taken": p["enrolled"]})
    for g in out.values():
        g["capacity"] = g["free"] + g["held"] + g["taken"]
    return [out[k] for k in sorted(out)]


@dataclass
class ActOutcome:
    """What an act on a referral did, or why the workflow refused it."""

    done: bool
    act: str
    referral_id: str
    state: str | None = None
    refusal: str | None = None
    refusal_code: str | None = None
    refusal_params: dict = field(default_factory=dict)


class KindergartenDesk(Desk):
    async def page(self, actor: StaffView, kg: str) -> dict:
        """Everything the kindergarten's page shows (the queue records the
        staff's look at the children's data)."""
        found = await self.kindergarten_in_scope(actor, kg, "kindergarten.view")
        p = actor.principal
        today = self.ctx.today()
        async with asking_the_queue():
            pools = await self.queue.places(p, kg)
            live = await self.queue.referrals(p, kg, "live")
            ended = await self.queue.referrals(p, kg, "ended")
            children = await self.queue.children(p, kg)
            scheduled = await self.queue.scheduled(p, kindergarten=kg)
            policy = await self.queue.policy(p)
        views = self.ctx.views
        return {
            "kindergarten": found, "today": today, "groups": groups(pools),
            "referrals": [{**r, **views.deadline_view(_moment(r["deadline"]), today),
                           "issued_at": self.ctx.local(_moment(r["issued_at"])),
                           "can_enrol": r["state"] == "awaiting_enrolment"} for r in live],
            "ended": [{**r, "ended_at": self.ctx.local(_moment(r["ended_at"]))} for r in ended
                      if r["outcome"] != "left"],
            "children": [{**c, "enrolled_at": self.ctx.local(_moment(c["ended_at"])),
                          "left_at": self.ctx.local(_moment(c["left_at"]))}
                         for c in children if c["status"] == "enrolled"],
            "left": [{**c, "left_at": self.ctx.local(_moment(c["left_at"]))} for c in children
                     if c["outcome"] == "left"],
            "scheduled": [{**x, "publish_at": self.ctx.local(_moment(x["publish_at"]))} for x in scheduled],
            "categories": [c["code"] for c in policy["categories"]],
            "cohorts": list(range(today.year, today.year - 9, -1)), "default_cohort": today.year - 3,
            "teaches": found["languages"] or list(d.TAUGHT_LANGUAGES),
            "can_publish": actor.can(P.KG_PLACES) and not found.get("closed_at"),
            "can_enrol": actor.can(P.KG_ENROL),
        }

    # ------------------------------------------------------------ places

    async def publish(self, actor: StaffView, kg: str, form: dict, *, scheduled: bool = False) -> dict:
        found = await self.kindergarten_in_scope(actor, kg, "places.publish")
        body = await self.places_body(actor, found, form, scheduled=scheduled)
        return await self.audited(actor, "places.publish", f"kindergarten:{kg}",
                                  lambda: self.queue.publish(actor.principal, kg, body),
                                  district=found["district"], **_plain(body))

    async def withdraw(self, actor: StaffView, kg: str, form: dict) -> dict:
        found = await self.kindergarten_in_scope(actor, kg, "places.withdraw")
        body = await self.places_body(actor, found, form)
        return await self.audited(actor, "places.withdraw", f"kindergarten:{kg}",
                                  lambda: self.queue.withdraw(actor.principal, kg, body),
                                  district=found["district"], **_plain(body))

    async def cancel_publication(self, actor: StaffView, kg: str, publication: int) -> dict:
        found = await self.kindergarten_in_scope(actor, kg, "places.cancel")
        async with asking_the_queue():
            pub = await self.queue.publication(actor.principal, publication)
        if pub["kindergarten"] != kg:
            await self.denied(actor, "places.cancel", f"publication:{publication}")
        return await self.audited(actor, "places.cancel", f"publication:{publication}",
                                  lambda: self.queue.cancel_publication(actor.principal, publication),
                                  district=found["district"], kindergarten=kg)

    async def places_body(self, actor: StaffView, kg: dict, form: dict, *, scheduled: bool = False) -> dict:
        async with asking_the_queue():
            policy = await self.queue.policy(actor.principal)
        today = self.ctx.today()
        f = d.validate_places(form, today.year, languages=kg["languages"],
                              categories=[c["code"] for c in policy["categories"]], scheduled=scheduled,
                              today=today)
        body: dict = {"cohort": f.cohort, "language": f.language, "count": f.count, "for_category": f.for_category}
        if scheduled:
            assert f.publish_on is not None and f.publish_time is not None
            moment = self.ctx.cal.start_of_day(f.publish_on).replace(hour=f.publish_time[0],
                                                                     minute=f.publish_time[1])
            if moment <= self.ctx.now():
                raise d.Refused([d.err("publish_time", "moment_in_past")])
            body["publish_at"] = moment.isoformat()
        return body

    # ------------------------------------------------------------ referrals

    async def enrol(self, actor: StaffView, kg: str, referral_id: str, nonce: str = "") -> ActOutcome:
        """The family brought the documents: the workflow's enrol update
        (refused, with its reason, before a needed privilege is confirmed
        or once the referral has ended)."""
        ref = await self._referral(actor, kg, referral_id, "referral.enrol")
        act = wc.RecordEnrolment(acted_at=self.ctx.now(), actor=f"kindergarten:{actor.id}")
        return await self._act(actor, ref, "enrol", lambda: self.ctx.referrals.enrol(
            referral_id, act, f"kindergarten-{nonce or uuid.uuid4().hex}"))

    async def declined(self, actor: StaffView, kg: str, referral_id: str, reason: str = "",
                       nonce: str = "") -> ActOutcome:
        """The family told the kindergarten it does not want the place: the
        referral ends as a parent's cancel does (the place returns, this
        kindergarten leaves the child's preferences; DOMAIN.md section 3)."""
        reason = d.validate_reason(reason)
        ref = await self._referral(actor, kg, referral_id, "referral.declined")
        act = wc.CancelReferral(acted_at=self.ctx.now(), actor=f"kindergarten:{actor.id}", drop_preference=True,
                                reason=("declined in person: " + reason if reason else "declined in person"))
        return await self._act(actor, ref, "declined", lambda: self.ctx.referrals.cancel(
            referral_id, act, f"kindergarten-{nonce or uuid.uuid4().hex}"))

    async def _referral(self, actor: StaffView, kg: str, referral_id: str, action: str) -> dict:
        """The referral, if it is one to this kindergarten (else "not found", audited)."""
        await self.kindergarten_in_scope(actor, kg, action)
        if not referral_id.isdigit():
            await self.denied(actor, action, f"referral:{referral_id[:40]}")
        return await self.found_or_denied(actor, action, f"referral:{referral_id}",
                                          lambda: self.queue.referral(actor.principal, kg, referral_id))

    async def _act(self, actor: StaffView, ref: dict, act: str, update) -> ActOutcome:
        subject = f"referral:{ref['id']}"
        details = {"application_id": ref["application_id"], "kindergarten": ref["kindergarten"]}
        try:
            result = await update()
        except ReferralRefused as exc:
            await self.audit(actor, f"referral.{act}", subject, outcome="refused", refusal=exc.reason[:500],
                             refusal_code=exc.code, **details)
            return ActOutcome(False, act, str(ref["id"]), exc.state, exc.reason, exc.code, dict(exc.params))
        except ReferralUnavailable as exc:
            await self.audit(actor, f"referral.{act}", subject, outcome="failed", error=str(exc)[:300], **details)
            raise
        await self.audit(actor, f"referral.{act}", subject, result_event=result.event, state=result.state.value,
                         **details)
        return ActOutcome(True, act, str(ref["id"]), result.state.value)

    # ------------------------------------------------------------ children

    async def leave(self, actor: StaffView, kg: str, application_id: str, reason: str = "") -> dict:
        """An enrolled child left: the queue frees the place at once and the
        next child in line gets a referral."""
        reason = d.validate_reason(reason)
        found = await self.kindergarten_in_scope(actor, kg, "child.leave")
        return await self.audited(actor, "child.leave", f"application:{application_id[:100]}",
                                  lambda: self.queue.leave(actor.principal, kg, application_id, reason),
                                  district=found["district"], kindergarten=kg, reason=reason or None)


def _moment(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _plain(body: dict) -> dict:
    return {k: v for k, v in body.items() if v is not None}
