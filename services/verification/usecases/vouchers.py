"""The district voucher commission: its list of voucher applications, one
application with the commission's decision record, and the decision itself
(approve with a benefit type and the documents checked, or reject with a
reason; members present named). The rules are domain.validate_voucher_decision."""
from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.verification import domain as d
from services.verification.models import Applicant, Staff, VoucherApplication, VoucherDecision, outbox
from services.verification.readmodel.views import contacts, full_name
from services.verification.usecases.context import Context, StaffView


class Vouchers:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def applications(self, actor: StaffView) -> list[dict]:
        ctx = self.ctx
        with ctx.tx(actor) as s:
            ctx.require(actor, d.Permission.VOUCHER_VIEW, "voucher.list")
            q = sa.select(VoucherApplication, Applicant).outerjoin(
                Applicant, Applicant.application_id == VoucherApplication.application_id)
            if not d.all_districts(actor.role):
                q = q.where(VoucherApplication.district == actor.district)
            rows = s.execute(q.order_by((VoucherApplication.status != "pending"),
                                        VoucherApplication.submitted_at)).all()
            out = [{"application_id": v.application_id, "status": v.status, "category": v.category,
                    "child": full_name(a), "submitted_at": ctx.local(v.submitted_at), "district": v.district}
                   for v, a in rows]
            ctx.audit(s, actor, "voucher.list", subject_type="district", subject_id=actor.district or "*",
                      district=actor.district, applications=[x["application_id"] for x in out][:200])
        return out

    def _load(self, s: Session, actor: StaffView, application_id: str, action: str,
              permission: d.Permission) -> tuple[VoucherApplication, Applicant | None]:
        self.ctx.require(actor, permission, action, "voucher", application_id)
        v = s.get(VoucherApplication, application_id)
        if v is None:
            raise self.ctx.missing(action, "voucher", application_id)
        self.ctx.in_district(actor, v.district, action, "voucher", application_id)
        return v, s.get(Applicant, application_id)

    def view(self, actor: StaffView, application_id: str, *, printing: bool = False) -> dict:
        ctx = self.ctx
        action = "voucher.print" if printing else "voucher.view"
        with ctx.tx(actor) as s:
            v, app = self._load(s, actor, application_id, action, d.Permission.VOUCHER_VIEW)
            dec = s.scalars(sa.select(VoucherDecision).where(VoucherDecision.application_id == application_id)
                            ).one_or_none()
            staff_names = dict(s.execute(sa.select(Staff.id, Staff.full_name)).all())
            view = {
                "application_id": v.application_id, "status": v.status, "category": v.category,
                **contacts(app), "district": v.district, "submitted_at": ctx.local(v.submitted_at),
                "queue_date": ctx.local(app.queue_date) if app else None,
                "decision": None if dec is None else {
                    "number": dec.number, "decision": dec.decision, "benefit_type": dec.benefit_type,
                    "documents": list(dec.documents), "reason": dec.reason, "members": list(dec.members),
                    "decided_at": ctx.local(dec.decided_at), "decided_by": staff_names.get(dec.decided_by, ""),
                },
                "can_decide": actor.can(d.Permission.VOUCHER_DECIDE) and dec is None,
                "policy": ctx.policy.vouchers,
            }
            ctx.audit(s, actor, action, subject_type="voucher", subject_id=application_id, district=v.district)
        return view

    def decide(self, actor: StaffView, application_id: str, *, decision: str, benefit_type: str,
               documents: Iterable[str], reason: str, members: Iterable[str] = ()) -> int:
        """Records the commission's decision; answers its number."""
        ctx = self.ctx
        now = ctx.now()
        try:
            with ctx.tx(actor) as s:
                v, app = self._load(s, actor, application_id, "voucher.decide", d.Permission.VOUCHER_DECIDE)
                if v.status != "pending":
                    raise d.Refused([d.err("decision", "already_decided")])
                colleagues = {m.login: m.full_name for m in s.scalars(sa.select(Staff).where(
                    Staff.role == d.Role.COMMISSION.value, Staff.district == (v.district or ""), Staff.active))}
                result = d.validate_voucher_decision(decision, benefit_type, documents, reason, members,
                                                     colleagues, ctx.policy.vouchers)
                present = list(dict.fromkeys((actor.login, *result.members)))
                dec = VoucherDecision(
                    application_id=application_id, decision=result.decision.value,
                    benefit_type=result.benefit_type, documents=list(result.documents), reason=result.reason,
                    members=[{"login": m, "name": colleagues.get(m, actor.full_name)} for m in present],
                    district=v.district, decided_by=actor.id, decided_at=now)
                s.add(dec)
                s.flush()
                v.status = result.decision.value
                outbox.add(s, "verification.voucher_decided.v1", application_id, {
                    "application_id": application_id, "parent_id": app.parent_id if app else None,
                    "decision": result.decision.value, "benefit_type": result.benefit_type,
                    "reason": result.reason, "decision_number": dec.number, "decided_at": now.isoformat(),
                }, time=now)
                ctx.audit(s, actor, "voucher.decide", subject_type="voucher", subject_id=application_id,
                          district=v.district, decision=result.decision.value, benefit_type=result.benefit_type,
                          documents=list(result.documents), number=dec.number)
                return dec.number
        except IntegrityError:
            # Two members deciding at once: the unique application id decides.
            raise d.Refused([d.err("decision", "already_decided")]) from None
