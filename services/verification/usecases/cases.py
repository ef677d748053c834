"""Cases and decisions: the worklist of a district, a case with its
history, and the caseworker's decision on it (confirm the privilege,
reject it with a reason, ask for a fresh certificate).

A decision is an update on the referral's workflow first (the form's nonce
is its update id: a form sent twice is one act); what the workflow answered
is then recorded, with its outbox row and audit entry. The facts the queue
publishes about the referral later say the same (readmodel/ingest.py)."""
from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.db import unit_of_work
from services.verification import domain as d
from services.verification.models import (
    AbuseCase, Applicant, Certificate, Decision, Referral, ReferralEvent, Staff, outbox, utc,
)
from services.verification.readmodel.ingest import CLOSED_STATES, apply_state
from services.verification.readmodel.views import contacts, pin_hashes
from services.verification.usecases.context import Context, StaffView
from workflows import contracts as wc
from workflows.client import ReferralRefused, ReferralUnavailable


@dataclass(frozen=True)
class DecisionOutcome:
    accepted: bool
    action: str
    result_event: str | None = None
    state: str | None = None
    deadline: datetime | None = None
    refusal: str | None = None
    refusal_code: str | None = None
    refusal_params: dict | None = None
    repeated: bool = False


def refusal_of(exc: ReferralRefused) -> tuple[str | None, dict]:
    """The workflow's refusal as a code with parameters for the pages: its
    own, or, for a referral found closed, this service's `case_closed`."""
    if exc.code:
        return exc.code, dict(exc.params)
    if exc.state:
        return "case_closed", {"state": exc.state}
    return None, {}


def _refusal_view(x: Decision) -> dict:
    return {"refusal": x.refusal, "refusal_code": x.refusal_code, "refusal_params": x.refusal_params or {}}


def load_case(ctx: Context, s: Session, actor: StaffView, referral_id: str, action: str,
              permission: d.Permission) -> tuple[Referral, Applicant | None]:
    """The referral and its applicant, if the actor may `permission` it."""
    ctx.require(actor, permission, action, "referral", referral_id)
    ref = s.get(Referral, referral_id)
    if ref is None:
        raise ctx.missing(action, "referral", referral_id)
    app = s.get(Applicant, ref.application_id)
    ctx.in_district(actor, app.district if app else None, action, "referral", referral_id)
    return ref, app


class Cases:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def worklist(self, actor: StaffView, district: str | None = None) -> dict:
        """Referrals waiting for privilege confirmation in the caller's
        district, the nearest deadline first."""
        ctx = self.ctx
        scoped = not d.all_districts(actor.role)
        if scoped:
            district = actor.district
        today = ctx.today()
        with ctx.tx(actor) as s:
            ctx.require(actor, d.Permission.WORKLIST, "worklist.view")
            items = ctx.views.worklist_items(s, ctx.views.waiting(s, district, scoped=scoped), today)
            ctx.audit(s, actor, "worklist.view", subject_type="district", subject_id=district or "*",
                      district=district or "", referrals=[i["referral_id"] for i in items][:200])
        return {"items": items, "district": district, "today": today}

    def case(self, actor: StaffView, referral_id: str) -> dict:
        ctx = self.ctx
        today = ctx.today()
        with ctx.tx(actor) as s:
            ref, app = load_case(ctx, s, actor, referral_id, "case.view", d.Permission.CASE_VIEW)
            pin = app.child_pin if app else None
            certs = list(s.scalars(sa.select(Certificate).where(Certificate.referral_id == referral_id)
                                   .order_by(Certificate.recorded_at.desc())))
            decisions = list(s.scalars(sa.select(Decision).where(Decision.referral_id == referral_id)
                                       .order_by(Decision.at.desc())))
            staff_names = dict(s.execute(sa.select(Staff.id, Staff.full_name)).all())
            abuse = list(s.scalars(sa.select(AbuseCase).where(AbuseCase.child_pin_hash.in_(pin_hashes(s, [pin])))
                                   .order_by(AbuseCase.opened_at.desc()))) if pin else []
            history = ctx.views.history(s, [pin] if pin else []).get(pin, [])
            latest = ctx.views.certificate_view(certs[0], today) if certs else None
            open_ = ref.state == d.OPEN_STATE
            view = {
                "referral_id": ref.referral_id, "application_id": ref.application_id, "state": ref.state,
                "open": open_, "category": ref.category or "", "needs_confirmation": ref.needs_confirmation,
                "kindergarten": ref.kindergarten_name or ref.kindergarten_id or "",
                "issued_at": ctx.local(ref.issued_at), "closed_at": ctx.local(ref.closed_at),
                "reason": ref.reason, "certificate_requests": ref.certificate_requests,
                **contacts(app), "queue_date": ctx.local(app.queue_date) if app else None,
                "certificate": latest,
                "certificates": [ctx.views.certificate_view(c, today) for c in certs],
                "decisions": [{"nonce": x.nonce, "action": x.action, "outcome": x.outcome,
                               "accepted": x.outcome == "accepted", "result_event": x.result_event,
                               "reason": x.reason, "at": ctx.local(x.at), **_refusal_view(x),
                               "by": staff_names.get(x.staff_id, x.staff_id)} for x in decisions],
                "timeline": self._timeline(s, referral_id, certs, decisions, staff_names),
                "earlier": [h for h in history if h["referral_id"] != ref.referral_id],
                "abuse": [{"id": a.id, "status": a.status, "cycles": a.cycles,
                           "opened_at": ctx.local(a.opened_at)} for a in abuse],
                "can_act": actor.can(d.Permission.CASE_ACT) and open_,
                "can_confirm": bool(open_ and latest and latest["in_date"]),
                "can_request_certificate": bool(open_ and latest and not latest["in_date"]),
                "today": today, "valid_days": ctx.policy.certificate_valid_days,
                "max_scan_mb": ctx.policy.max_scan_bytes / (1024 * 1024),
                **ctx.views.deadline_view(ref.deadline, today),
            }
            ctx.audit(s, actor, "case.view", subject_type="referral", subject_id=referral_id,
                      district=view["district"], application_id=ref.application_id)
        return view

    def _timeline(self, s: Session, referral_id: str, certs: list[Certificate], decisions: list[Decision],
                  staff_names: dict[str, str]) -> list[dict]:
        """The referral's facts, the decisions and the certificates, oldest first."""
        local = self.ctx.local
        events = s.scalars(sa.select(ReferralEvent).where(ReferralEvent.referral_id == referral_id)
                           .order_by(ReferralEvent.at, ReferralEvent.seq))
        return sorted(
            [{"at": local(e.at), "kind": "event", "type": e.type, "reason": e.reason} for e in events]
            + [{"at": local(x.at), "kind": "decision", "action": x.action, "outcome": x.outcome,
                "result_event": x.result_event, "reason": x.reason, **_refusal_view(x),
                "by": staff_names.get(x.staff_id, x.staff_id)} for x in decisions]
            + [{"at": local(c.recorded_at), "kind": "certificate", "organisation": c.organisation,
                "number": c.number, "issued_on": c.issued_on,
                "by": staff_names.get(c.recorded_by, c.recorded_by)} for c in certs],
            key=lambda x: x["at"])

    # ------------------------------------------------------------ deciding

    async def decide(self, actor: StaffView, referral_id: str, action: d.Action | str, *, reason: str = "",
                     nonce: str = "") -> DecisionOutcome:
        """Confirm, reject, or ask for a fresh certificate: an update on the
        referral's workflow; a refusal comes back with the workflow's reason."""
        action = d.Action(action)
        nonce = (nonce or uuid.uuid4().hex)[:64]
        reason = " ".join((reason or "").split())
        repeated, ctx = await asyncio.to_thread(self._prepare, actor, referral_id, action, reason, nonce)
        if repeated is not None:
            return repeated
        referrals = self.ctx.referrals
        acted_at = self.ctx.now()
        actor_ref = f"caseworker:{actor.id}"
        update_id = f"verification-{nonce}"
        try:
            if action is d.Action.REJECT:
                result = await referrals.reject(
                    referral_id, wc.RejectPrivilege(acted_at=acted_at, actor=actor_ref, reason=reason), update_id)
            else:
                # Asking for a fresh certificate is the workflow's answer to an
                # out-of-date one: it records referral.certificate_requested
                # and keeps the window running.
                result = await referrals.confirm(
                    referral_id, wc.ConfirmPrivilege(acted_at=acted_at, actor=actor_ref,
                                                     certificate_issued=ctx["certificate_issued"]), update_id)
        except ReferralRefused as exc:
            await asyncio.to_thread(self._record_refusal, actor, referral_id, action, reason, nonce, exc, ctx)
            code, params = refusal_of(exc)
            return DecisionOutcome(False, action.value, refusal=exc.reason, refusal_code=code, refusal_params=params)
        except ReferralUnavailable as exc:
            await asyncio.to_thread(self._record_failure, actor, referral_id, action, str(exc), ctx)
            raise
        return await asyncio.to_thread(self._record_acceptance, actor, referral_id, action, reason, nonce,
                                       result, ctx)

    def _prepare(self, actor: StaffView, referral_id: str, action: d.Action, reason: str,
                 nonce: str) -> tuple[DecisionOutcome | None, dict]:
        ctx = self.ctx
        today = ctx.today()
        with ctx.tx(actor) as s:
            ref, app = load_case(ctx, s, actor, referral_id, f"case.{action.value}", d.Permission.CASE_ACT)
            done = s.scalars(sa.select(Decision).where(Decision.nonce == nonce)).one_or_none()
            if done is not None:
                # The same form sent twice: one act.
                return DecisionOutcome(done.outcome == "accepted", done.action, done.result_event,
                                       ref.state, utc(ref.deadline), done.refusal, done.refusal_code,
                                       done.refusal_params, repeated=True), {}
            cert = ctx.views.latest_certificates(s, [referral_id]).get(referral_id)
            d.check_action(action, ref.state, d.Certificate(cert.issued_on) if cert else None, today,
                           reason, ctx.policy.certificate_valid_days)
            return None, {"application_id": ref.application_id, "district": app.district if app else None,
                          "certificate_id": cert.id if cert else None,
                          "certificate_issued": cert.issued_on if cert else None}

    def _record_acceptance(self, actor: StaffView, referral_id: str, action: d.Action, reason: str, nonce: str,
                           result: wc.ActResult, ctx: dict) -> DecisionOutcome:
        now = self.ctx.now()
        decision_id = str(uuid.uuid4())
        with unit_of_work(self.ctx.sessions) as s:
            s.add(Decision(id=decision_id, referral_id=referral_id, action=action.value, outcome="accepted",
                           result_event=result.event, reason=reason or result.reason, refusal=None,
                           certificate_id=ctx["certificate_id"], staff_id=actor.id, nonce=nonce, at=now))
            ref = s.get(Referral, referral_id, with_for_update=True)
            if ref is not None:
                # The queue's referral.* fact will say the same; until it
                # arrives the worklist already shows what the workflow did.
                # (The count of requests comes from the facts alone: the
                # fact may arrive before or after this, never counted twice.)
                apply_state(ref, result.state.value, deadline=result.deadline, at=now, reason=result.reason)
            outbox.add(s, "verification.decision_recorded.v1", referral_id, {
                "decision_id": decision_id, "referral_id": referral_id, "application_id": ctx["application_id"],
                "action": action.value, "result_event": result.event, "state": result.state.value,
                "deadline": result.deadline.isoformat() if result.deadline else None,
                "certificate_id": ctx["certificate_id"], "reason": reason or result.reason,
                "decided_by": actor.id, "decided_at": now.isoformat(),
            }, time=now)
            self.ctx.audit(s, actor, f"case.{action.value}", subject_type="referral", subject_id=referral_id,
                           district=ctx["district"], result_event=result.event, state=result.state.value,
                           reason=reason or None, certificate_id=ctx["certificate_id"])
        return DecisionOutcome(True, action.value, result.event, result.state.value, result.deadline,
                               result.reason)

    def _record_refusal(self, actor: StaffView, referral_id: str, action: d.Action, reason: str, nonce: str,
                        refused: ReferralRefused, ctx: dict) -> None:
        now = self.ctx.now()
        code, params = refusal_of(refused)
        with unit_of_work(self.ctx.sessions) as s:
            if refused.state in CLOSED_STATES:
                # The workflow knows first: the referral closed while its fact
                # was still on the way to this service.
                ref = s.get(Referral, referral_id)
                if ref is not None:
                    apply_state(ref, refused.state, at=now)
            s.add(Decision(id=str(uuid.uuid4()), referral_id=referral_id, action=action.value, outcome="refused",
                           result_event=None, reason=reason or None, refusal=refused.reason[:1000],
                           refusal_code=code, refusal_params=params or None,
                           certificate_id=ctx["certificate_id"], staff_id=actor.id, nonce=nonce, at=now))
            self.ctx.audit(s, actor, f"case.{action.value}", subject_type="referral", subject_id=referral_id,
                           district=ctx["district"], outcome="refused", refusal=refused.reason[:500],
                           refusal_code=code)

    def _record_failure(self, actor: StaffView, referral_id: str, action: d.Action, error: str, ctx: dict) -> None:
        with unit_of_work(self.ctx.sessions) as s:
            self.ctx.audit(s, actor, f"case.{action.value}", subject_type="referral", subject_id=referral_id,
                           district=ctx["district"], outcome="failed", error=error[:500])
