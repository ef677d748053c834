"""The read model of referrals, built from the facts other services publish:
applications (registration: application.*) and referrals (queue: referral.*),
consumed idempotently (consumers.py). After every fact of a child's
referrals the abuse rule (domain.detect_abuse) runs.

The queue service stays the system of record; this is what the worklist and
the cases are read from, and a fact may arrive late or twice."""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from kezek.events import Event
from kezek.logging import get_logger
from kezek.trust import service_principal
from services.verification import domain as d
from services.verification.models import (
    AbuseCase, Applicant, Referral, ReferralEvent, VoucherApplication, audit_trail, outbox, utc,
)
from kezek.categories import GENERAL
from services.verification.readmodel.views import pin_hashes
from workflows import rules

log = get_logger(__name__)
THE_RULE = service_principal("verification")     # the abuse rule raises flags as the service itself

# And "expired", as a referral moved from the old portal may have ended.
CLOSED_STATES = (*sorted(rules.CLOSED_STATES), "expired")


def _now() -> datetime:
    return datetime.now(UTC)


REFERRAL_EVENTS = ("referral.issued.v1", "referral.imported.v1", "referral.certificate_requested.v1",
                   "referral.extended.v1", "referral.privilege_confirmed.v1", "referral.privilege_rejected.v1",
                   "referral.cancelled.v1", "referral.expired.v1", "referral.enrolled.v1")
APPLICATION_EVENTS = ("application.submitted.v1", "application.received.v1",
                      "application.returned_to_general_queue.v1", "application.removed.v1")


def apply_state(ref: Referral, state: str, *, deadline: datetime | None = None, at: datetime,
                 reason: str | None = None) -> None:
    """Moves the read model forward; a closed referral never reopens (facts
    may arrive late or twice)."""
    if ref.state in CLOSED_STATES and state not in CLOSED_STATES:
        return
    ref.state = state
    if deadline is not None:
        ref.deadline = deadline
    if state in CLOSED_STATES:
        ref.closed_at = ref.closed_at or at
        ref.deadline = None
    if reason:
        ref.reason = reason[:500]
    ref.updated_at = at


def _dt(raw: Any) -> datetime | None:
    if not raw:
        return None
    value = datetime.fromisoformat(str(raw))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass
class Ingest:
    """Builds the worklist's read model from the queue's and registration's
    facts, and runs the abuse rule when a child takes a privileged referral.
    Called inside the consumer's transaction (idempotent by event id)."""

    policy: d.VerificationPolicy = field(default_factory=d.VerificationPolicy)
    clock: Callable[[], datetime] = _now

    def __call__(self, s: Session, event: Event) -> None:
        data = event.data
        t = event.type
        if t == "application.submitted.v1":
            app = self._applicant(s, data["application_id"], event)
            app.child_pin = data["child_pin"]
            app.child_surname, app.child_name = data["child_surname"], data["child_name"]
            app.child_patronymic = data.get("child_patronymic")
            app.child_birth_date = date.fromisoformat(data["child_birth_date"])
            app.parent_id, app.country = data["parent_id"], data.get("country")
            app.region, app.district = data.get("region") or None, data.get("district") or None
            if app.submitted_category is None:
                app.category = app.submitted_category = data["category"]
            app.language, app.queue_date = data.get("language"), _dt(data["queue_date"])
            if data["category"] in self.policy.vouchers.categories and s.get(VoucherApplication, app.application_id) is None:
                s.add(VoucherApplication(application_id=app.application_id, category=data["category"],
                                         district=app.district, status="pending",
                                         submitted_at=app.queue_date or event.time))
            s.flush()
            self._detect(s, app.child_pin, app.application_id, event)
        elif t == "application.received.v1":
            app = self._applicant(s, data["application_id"], event)
            app.parent_id = app.parent_id or data.get("parent_id")
            app.parent_phone = data.get("phone") or app.parent_phone
            app.parent_email = data.get("email") or app.parent_email
        elif t == "application.returned_to_general_queue.v1":
            self._applicant(s, data["application_id"], event).category = "general"
        elif t == "application.removed.v1":
            self._applicant(s, data["application_id"], event).status = "removed"
        elif t in REFERRAL_EVENTS:
            if t == "referral.imported.v1":
                self._imported_child(s, event)
            self._referral_event(s, event)

    def _imported_child(self, s: Session, event: Event) -> None:
        """A child of the old portal never passed through registration: the
        import's fact names it. What registration said, if anything, stays."""
        data = event.data
        app = self._applicant(s, data["application_id"], event)
        app.child_pin = app.child_pin or data["child_pin"]
        if app.child_surname is None:
            app.child_surname, app.child_name = data["child_surname"], data["child_name"]
            app.child_patronymic = data.get("child_patronymic")
        app.child_birth_date = app.child_birth_date or date.fromisoformat(data["child_birth_date"])
        app.parent_id = app.parent_id or data.get("parent_id")
        app.district = app.district or data.get("district") or None
        if app.submitted_category is None:
            app.category = app.submitted_category = data["category"]
        app.language = app.language or data["language"]
        app.queue_date = app.queue_date or _dt(data["queue_date"])

    def _applicant(self, s: Session, application_id: str, event: Event) -> Applicant:
        app = s.get(Applicant, application_id, with_for_update=True)
        if app is None:
            app = Applicant(application_id=application_id, status="queued", updated_at=event.time)
            s.add(app)
        app.updated_at = event.time
        return app

    def _referral_event(self, s: Session, event: Event) -> None:
        data, t = event.data, event.type
        rid = data["referral_id"]
        ref = s.get(Referral, rid, with_for_update=True)
        if ref is None:
            ref = Referral(referral_id=rid, application_id=data["application_id"], needs_confirmation=False,
                           state="awaiting_enrolment", certificate_requests=0, updated_at=event.time)
            s.add(ref)
        ref.kindergarten_id = data.get("kindergarten_id") or ref.kindergarten_id
        ref.kindergarten_name = data.get("kindergarten_name") or ref.kindergarten_name
        deadline = _dt(data.get("deadline"))
        if t == "referral.issued.v1":
            ref.needs_confirmation = bool(data.get("needs_confirmation"))
            ref.category = data.get("category") or ref.category
            ref.issued_at = ref.issued_at or event.time
            apply_state(ref, rules.first_state(ref.needs_confirmation).value, deadline=deadline, at=event.time)
        elif t == "referral.imported.v1":
            # It runs on from where the old portal left it: its own state and deadline.
            ref.needs_confirmation = data["needs_confirmation"]
            ref.category = data["category"]
            ref.issued_at = ref.issued_at or _dt(data["issued_at"])
            apply_state(ref, data["state"], deadline=deadline, at=event.time)
        elif t == "referral.extended.v1":
            apply_state(ref, ref.state, deadline=deadline, at=event.time)
        else:
            apply_state(ref, rules.state_after_fact(t).value, deadline=deadline, at=event.time,
                        reason=data.get("reason"))
        if s.scalars(sa.select(ReferralEvent.seq).where(ReferralEvent.event_id == event.id)).first() is None:
            s.add(ReferralEvent(event_id=event.id, referral_id=rid, type=t.removesuffix(".v1"), at=event.time,
                                reason=(data.get("reason") or None)))
        s.flush()
        if t == "referral.certificate_requested.v1":
            ref.certificate_requests = s.scalar(sa.select(sa.func.count()).select_from(ReferralEvent).where(
                ReferralEvent.referral_id == rid, ReferralEvent.type == "referral.certificate_requested"))
        app = s.get(Applicant, ref.application_id)
        # After every fact, not only "issued": the facts of a child's
        # different referrals travel on different partitions, so the
        # cancellation that completes the pattern may arrive last.
        if app is not None and app.child_pin:
            self._detect(s, app.child_pin, app.application_id, event)

    def _detect(self, s: Session, pin: str, application_id: str, event: Event) -> None:
        rows = s.execute(
            sa.select(Referral).join(Applicant, Applicant.application_id == Referral.application_id)
            .where(Applicant.child_pin_hash.in_(pin_hashes(s, [pin])))).scalars().all()
        if not rows:
            return
        history = [d.PastReferral(r.referral_id, r.application_id, _privileged(r), utc(r.issued_at) or event.time,
                                  _outcome(r.state), utc(r.closed_at)) for r in rows]
        finding = d.detect_abuse(history, self.clock(), self.policy.abuse)
        if finding is None:
            return
        if s.scalars(sa.select(AbuseCase.id).where(AbuseCase.child_pin_hash.in_(pin_hashes(s, [pin])),
                                                   AbuseCase.status == "open")).first():
            return
        app = s.get(Applicant, application_id)
        case_id = str(uuid.uuid4())
        s.add(AbuseCase(id=case_id, child_pin=pin, application_id=application_id,
                        district=app.district if app else None, rule=finding.rule, cycles=finding.cycles,
                        referral_ids=list(finding.referral_ids), applications=finding.applications, status="open",
                        opened_at=self.clock()))
        outbox.add(s, "verification.abuse_flagged.v1", application_id, {
            "case_id": case_id, "application_id": application_id, "rule": finding.rule, "cycles": finding.cycles,
            "referral_ids": list(finding.referral_ids), "applications": finding.applications,
            "district": app.district if app else None,
        })
        audit_trail.record(s, THE_RULE, "abuse.flag", f"abuse_case:{case_id}",
                           district=app.district if app else None, at=self.clock().astimezone(UTC),
                           details={"rule": finding.rule, "cycles": finding.cycles, "event_id": event.id})
        log.info("verification.abuse_flagged", case_id=case_id, cycles=finding.cycles)


def _privileged(ref: Referral) -> bool:
    return bool(ref.needs_confirmation) or (ref.category not in (None, "", GENERAL))


def _outcome(state: str) -> str | None:
    return {"paused": "expired", "resumed": "expired"}.get(state, state if state in CLOSED_STATES else None)
