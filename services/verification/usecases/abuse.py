"""Abuse flags and revocation (DOMAIN.md section 4): the flags the abuse
rule raised (readmodel/ingest.py), and the supervisor's resolution of one —
revoke a privilege found false, or dismiss the flag.

Revoking rejects the live referral awaiting confirmation, if any, through
its workflow (the place goes back to the register, the child to the general
queue); verification.privilege_revoked tells the queue service to keep the
child in the general queue in any case."""
from __future__ import annotations

import asyncio

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.categories import PRIVILEGED
from kezek.db import unit_of_work
from services.verification import domain as d
from services.verification.models import AbuseCase, Applicant, Referral, outbox
from services.verification.readmodel.ingest import apply_state
from services.verification.readmodel.views import full_name, pin_hashes
from services.verification.usecases.cases import refusal_of
from services.verification.usecases.context import Context, StaffView
from workflows import contracts as wc
from workflows.client import ReferralRefused


class Abuse:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def cases(self, actor: StaffView, status: str = "open") -> list[dict]:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            ctx.require(actor, d.Permission.ABUSE_VIEW, "abuse.list")
            q = sa.select(AbuseCase, Applicant).outerjoin(
                Applicant, Applicant.application_id == AbuseCase.application_id)
            if status:
                q = q.where(AbuseCase.status == status)
            if not d.all_districts(actor.role):
                q = q.where(AbuseCase.district == actor.district)
            rows = s.execute(q.order_by(AbuseCase.opened_at.desc())).all()
            out = [{"id": a.id, "status": a.status, "cycles": a.cycles, "applications": a.applications,
                    "child": full_name(app), "child_pin": a.child_pin, "district": a.district,
                    "opened_at": ctx.local(a.opened_at)} for a, app in rows]
            ctx.audit(s, actor, "abuse.list", subject_type="district", subject_id=actor.district or "*",
                      district=actor.district, cases=[x["id"] for x in out][:200])
        return out

    def _load(self, s: Session, actor: StaffView, case_id: str, action: str,
              permission: d.Permission) -> AbuseCase:
        self.ctx.require(actor, permission, action, "abuse_case", case_id)
        case = s.get(AbuseCase, case_id)
        if case is None:
            raise self.ctx.missing(action, "abuse_case", case_id)
        self.ctx.in_district(actor, case.district, action, "abuse_case", case_id)
        return case

    def _open(self, s: Session, actor: StaffView, case_id: str, action: str, reason: str) -> tuple[AbuseCase, str]:
        """An open case the actor may resolve, and the resolution's reason."""
        case = self._load(s, actor, case_id, action, d.Permission.ABUSE_RESOLVE)
        if case.status != "open":
            raise d.Refused([d.err("case", "case_closed", state=case.status)])
        return case, d.validate_resolution(reason)

    def case(self, actor: StaffView, case_id: str) -> dict:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            case = self._load(s, actor, case_id, "abuse.view", d.Permission.ABUSE_VIEW)
            app = s.get(Applicant, case.application_id)
            history = ctx.views.history(s, [case.child_pin]).get(case.child_pin, [])
            live = ctx.views.live_privileged_referral(s, case.child_pin)
            view = {"id": case.id, "status": case.status, "rule": case.rule, "cycles": case.cycles,
                    "applications": case.applications, "referral_ids": list(case.referral_ids),
                    "child": full_name(app), "child_pin": case.child_pin, "application_id": case.application_id,
                    "category": app.category if app else None, "district": case.district,
                    "parent_phone": app.parent_phone if app else None,
                    "opened_at": ctx.local(case.opened_at), "resolved_at": ctx.local(case.resolved_at),
                    "resolution": case.resolution, "history": history,
                    "live_referral": live.referral_id if live else None,
                    "can_resolve": actor.can(d.Permission.ABUSE_RESOLVE) and case.status == "open"}
            ctx.audit(s, actor, "abuse.view", subject_type="abuse_case", subject_id=case_id, district=case.district)
        return view

    async def revoke(self, actor: StaffView, case_id: str, reason: str) -> dict:
        """Revokes the child's privilege; answers whether a live referral was
        rejected, and the workflow's refusal when it had closed meanwhile."""
        ctx = await asyncio.to_thread(self._prepare_revocation, actor, case_id, reason)
        rejected, refused = False, None
        if ctx["referral_id"]:
            referrals = self.ctx.referrals
            try:
                await referrals.reject(ctx["referral_id"], wc.RejectPrivilege(
                    acted_at=self.ctx.now(), actor=f"caseworker:{actor.id}",
                    reason=f"privilege revoked: {ctx['reason']}"[:500]), f"revoke-{case_id}")
                rejected = True
            except ReferralRefused as exc:
                # The referral closed meanwhile; the event still revokes the privilege.
                refused = exc
        return await asyncio.to_thread(self._record_revocation, actor, case_id, ctx, rejected, refused)

    def _prepare_revocation(self, actor: StaffView, case_id: str, reason: str) -> dict:
        with self.ctx.tx(actor) as s:
            case, text = self._open(s, actor, case_id, "abuse.revoke", reason)
            live = self.ctx.views.live_privileged_referral(s, case.child_pin)
            current = s.scalars(sa.select(Applicant)
                                .where(Applicant.child_pin_hash.in_(pin_hashes(s, [case.child_pin])))
                                .order_by(Applicant.queue_date.desc())).first()
            return {"reason": text, "district": case.district, "referral_id": live.referral_id if live else None,
                    "application_id": current.application_id if current else case.application_id,
                    "from_category": (current.category if current else None) or PRIVILEGED}

    def _record_revocation(self, actor: StaffView, case_id: str, ctx: dict, rejected: bool,
                           refused: ReferralRefused | None) -> dict:
        now = self.ctx.now()
        with unit_of_work(self.ctx.sessions) as s:
            case = s.get(AbuseCase, case_id, with_for_update=True)
            assert case is not None
            case.status, case.resolved_by, case.resolved_at = "revoked", actor.id, now
            case.resolution = ctx["reason"]
            case.rejected_referral_id = ctx["referral_id"] if rejected else None
            same_child = Applicant.child_pin_hash.in_(pin_hashes(s, [case.child_pin]))
            for app in s.scalars(sa.select(Applicant).where(same_child)):
                app.category = "general"
            if rejected:
                ref = s.get(Referral, ctx["referral_id"])
                if ref is not None:
                    apply_state(ref, "privilege_rejected", at=now, reason=ctx["reason"])
            outbox.add(s, "verification.privilege_revoked.v1", ctx["application_id"], {
                "case_id": case_id, "application_id": ctx["application_id"],
                "from_category": ctx["from_category"], "to_category": "general", "reason": ctx["reason"],
                "revoked_at": now.isoformat(), "referral_id": ctx["referral_id"] if rejected else None,
                "referral_rejected": rejected, "revoked_by": actor.id,
            }, time=now)
            self.ctx.audit(s, actor, "abuse.revoke", subject_type="abuse_case", subject_id=case_id,
                           district=ctx["district"], referral_id=ctx["referral_id"], referral_rejected=rejected,
                           refusal=refused and refused.reason, reason=ctx["reason"])
        code, params = refusal_of(refused) if refused else (None, {})
        return {"referral_rejected": rejected, "referral_id": ctx["referral_id"],
                "refusal": refused and refused.reason, "refusal_code": code, "refusal_params": params}

    def dismiss(self, actor: StaffView, case_id: str, note: str) -> None:
        with self.ctx.tx(actor) as s:
            case, text = self._open(s, actor, case_id, "abuse.dismiss", note)
            case.status, case.resolved_by, case.resolved_at, case.resolution = \
                "dismissed", actor.id, self.ctx.now(), text
            self.ctx.audit(s, actor, "abuse.dismiss", subject_type="abuse_case", subject_id=case_id,
                           district=case.district, reason=text)
