"""The family's own copy (DOMAIN.md section 7): what verification holds
about the parent's applications: the worklist's applicant, each referral's
case (state, deadlines), the certificates recorded (their data and the
scan's name and size; the scan itself stays with the service), the
caseworkers' decisions, and the acts recorded on them (the audit trail's
acts, staff named by role only)."""
from __future__ import annotations

import sqlalchemy as sa

from kezek.audit import ACT
from services.verification.models import (Applicant, Certificate, Decision, Referral, Scan, VoucherDecision,
                                          audit_trail)
from services.verification.usecases.context import Context


def _plain(value):
    return value.isoformat() if hasattr(value, "isoformat") else value


class Family:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def copy(self, parent_id: str) -> dict:
        with self.ctx.sessions() as s:
            applicants = s.scalars(sa.select(Applicant).where(Applicant.parent_id == parent_id)
                                   .order_by(Applicant.application_id)).all()
            ids = [a.application_id for a in applicants]
            refs = s.scalars(sa.select(Referral).where(Referral.application_id.in_(ids))
                             .order_by(Referral.issued_at)).all() if ids else []
            rids = [r.referral_id for r in refs]
            certs = s.execute(sa.select(Certificate, Scan.size, Scan.content_type)
                              .join(Scan, Scan.sha256 == Certificate.scan_sha256)
                              .where(Certificate.referral_id.in_(rids))).all() if rids else []
            decisions = s.scalars(sa.select(Decision).where(Decision.referral_id.in_(rids))
                                  .order_by(Decision.at)).all() if rids else []
            vouchers = s.scalars(sa.select(VoucherDecision).where(VoucherDecision.application_id.in_(ids))).all() \
                if ids else []
            subjects = ([f"referral:{r}" for r in rids] + [f"voucher:{i}" for i in ids]
                        + [f"application:{i}" for i in ids])
            t = audit_trail.table
            acts = s.execute(sa.select(t).where(t.c.subject.in_(subjects), t.c.kind == ACT)
                             .order_by(t.c.id)).mappings().all() if subjects else []
            return {
                "applicants": [{
                    "application_id": a.application_id, "child_pin": a.child_pin, "child_surname": a.child_surname,
                    "child_name": a.child_name, "child_patronymic": a.child_patronymic,
                    "child_birth_date": _plain(a.child_birth_date), "parent_phone": a.parent_phone,
                    "parent_email": a.parent_email, "district": a.district, "category": a.category,
                    "submitted_category": a.submitted_category, "status": a.status} for a in applicants],
                "referrals": [{
                    "referral_id": r.referral_id, "application_id": r.application_id,
                    "kindergarten": r.kindergarten_name or r.kindergarten_id, "state": r.state,
                    "issued_at": _plain(r.issued_at), "deadline": _plain(r.deadline), "closed_at": _plain(r.closed_at),
                    "certificate_requests": r.certificate_requests} for r in refs],
                "certificates": [{
                    "referral_id": c.referral_id, "organisation": c.organisation, "number": c.number,
                    "issued_on": _plain(c.issued_on), "scan_name": c.scan_name, "scan_bytes": size,
                    "scan_type": ctype, "recorded_at": _plain(c.recorded_at)} for c, size, ctype in certs],
                "decisions": [{
                    "referral_id": d.referral_id, "action": d.action, "outcome": d.outcome, "reason": d.reason,
                    "refusal": d.refusal, "at": _plain(d.at)} for d in decisions],
                "vouchers": [{"application_id": v.application_id, "decision": v.decision,
                              "benefit_type": v.benefit_type, "reason": v.reason, "decided_at": _plain(v.decided_at)}
                             for v in vouchers],
                "history": [{"at": _plain(r["at"]), "action": r["action"], "subject": r["subject"],
                             "by": r["actor"] if r["actor_role"] in ("parent", "service")
                             else f"staff ({r['actor_role']})", "outcome": r["outcome"]} for r in acts],
            }
