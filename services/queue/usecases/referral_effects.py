"""The queue's side of a referral (DOMAIN.md section 4), as the
ReferralWorkflow's activities ask for it: a place returned (cancelled,
expired, privilege rejected), the stop-list, an enrolment, the facts that
leave the register untouched; and the referrals whose workflow is still to
be started. Each effect is applied once per idempotency key, in the
transaction of the effect and its events."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.queue.domain.refusals import Invalid, Refused
from services.queue.models import Application, Kindergarten, Referral, outbox
from services.queue.store import entries, places, referrals
from services.queue.store.times import aware, utc
from services.queue.usecases.ageing import age_out, leaves_queue
from services.queue.usecases.closing import closed
from services.queue.usecases.entries import to_general
from services.queue.usecases.work import Context, UnitOfWork
from workflows import rules

ACTIVITY_CONSUMER = "queue.activities"


def _claimed(w: UnitOfWork, key: str) -> bool:
    """True the first time an idempotency key is seen (processed_events keeps
    36-character ids; the keys are longer)."""
    return outbox.claim(w.s, ACTIVITY_CONSUMER, str(uuid.uuid5(uuid.NAMESPACE_URL, f"kezek-queue:{key}")))


def _live(w: UnitOfWork, referral_id: str, application_id: str, *, refusal: str) -> Referral:
    """The referral, locked; refused (`refusal`) unless it is live."""
    ref = referrals.lock(w.s, referral_id, application_id)
    if ref.status != "live":
        raise Refused(refusal, field="referral_id", referral_id=referral_id, status=ref.status,
                      outcome=ref.outcome or ref.state)
    return ref


class ReferralEffects:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def return_place(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                     outcome: str, drop_preference: bool = False, reason: str | None = None,
                     actor: str = "system") -> bool:
        """The referral ends and its place goes back to the pool it came
        from. The child's entry changes in the same transaction, so no
        allocation can see it half-way: cancelled -> waiting (without that
        kindergarten if asked), expired -> on the stop-list, privilege
        rejected -> waiting in the general queue; and a child who has
        reached school age by then leaves the queue (usecases/ageing.py)."""
        if outcome not in rules.STATE_AFTER_RETURN:
            raise Invalid("referral_outcome_unknown", field="outcome", outcome=outcome)
        at = utc(at)
        with self.ctx.uow() as w:
            if not _claimed(w, key):
                return False
            ref = _live(w, referral_id, application_id, refusal="referral_ended")
            policy, _ = w.policy()
            ref.status, ref.outcome, ref.ended_at = "ended", outcome, at
            ref.state = rules.STATE_AFTER_RETURN[outcome].value
            w.s.flush()
            # The pool before the child, in the allocation's order: no deadlock.
            places.release(w.s, ref.place_id)
            app = entries.lock(w.s, ref.application_id)
            w.entry_moved(app.cohort, app.preferences)  # back among the waiting (or paused)
            # Ended on or after the school-age birthday: the child leaves the
            # queue instead of returning to it or going on the stop-list.
            aged = leaves_queue(w, app, at)
            if not aged:
                if outcome == "cancelled":
                    if drop_preference:
                        app.preferences = [k for k in app.preferences if k != ref.kindergarten_id]
                    app.status = "queued"
                elif outcome == "expired":
                    # Put on the stop-list at once (the workflow's next call sets
                    # the exact end): in between, no allocation may pick the child.
                    app.status, app.paused_until = "paused", rules.stoplist_end(at, policy)
                else:
                    app.status = "queued"
                    to_general(w, app, actor=actor, reason=reason, at=at)
            app.updated_at = w.now()
            place = f"place:{ref.kindergarten_id}/{ref.cohort}/{ref.language}"
            stoplist = outcome == "expired" and not aged
            w.emit(f"referral.{outcome}.v1", f"referral:{ref.id}", referrals.event_data(
                w.s, ref, app.parent_id, reason=None if outcome == "expired" else reason,
                stoplist_until=app.paused_until.isoformat() if stoplist else None, aged_out=aged or None), time=at)
            w.emit("place.returned.v1", place, {
                "kindergarten_id": ref.kindergarten_id, "cohort": ref.cohort, "language": ref.language,
                "for_category": ref.for_category or None, "referral_id": str(ref.id), "reason": outcome}, time=at)
            w.audit(actor, f"referral.{outcome}", f"application:{app.id}",
                    {"referral_id": ref.id, "kindergarten": ref.kindergarten_id, "reason": reason,
                     "drop_preference": drop_preference}, at=at)
            w.audit(actor, "place.returned", place, {"referral_id": ref.id, "reason": outcome}, at=at)
            if aged:
                age_out(w, app, at=at, referral_id=ref.id)
            w.entry_waits(f"place returned by referral {ref.id}", app, (ref.kindergarten_id, ref.cohort, ref.language))
            return True

    def return_to_general_queue(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                                from_category: str, reason: str | None = None, actor: str = "system") -> bool:
        with self.ctx.uow() as w:
            if not _claimed(w, key):
                return False
            app = entries.lock(w.s, application_id)
            if app.status == "aged_out":
                return True  # it left the queue when its referral ended: no queue to return to
            # Usually already done by return_place in the same act; then a no-op.
            to_general(w, app, actor=actor, reason=reason, at=utc(at))
            return True

    def put_on_stoplist(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                        until: datetime, actor: str = "system") -> bool:
        with self.ctx.uow() as w:
            if not _claimed(w, key):
                return False
            app = entries.lock(w.s, application_id)
            if app.status == "aged_out":
                # A workflow that started before it read return_place's answer
                # (AGED_OUT_PATCH) still asks: the child has left the queue.
                return False
            if app.status not in ("paused", "queued"):
                raise Refused("stoplist_refused", field="application_id", status=app.status)
            app.status, app.paused_until, app.updated_at = "paused", utc(until), w.now()
            w.emit("application.paused.v1", f"application:{app.id}", {
                "application_id": app.id, "parent_id": app.parent_id, "referral_id": str(referral_id),
                "until": utc(until).isoformat()}, time=utc(at))
            w.audit(actor, "application.paused", f"application:{app.id}",
                    {"until": utc(until).isoformat(), "referral_id": referral_id}, at=utc(at))
            return True

    def lift_stoplist(self, *, key: str, referral_id: str | None, application_id: str, at: datetime,
                      actor: str = "system") -> bool:
        with self.ctx.uow() as w:
            if not _claimed(w, key):
                return False
            _resume(w, entries.lock(w.s, application_id), actor=actor, at=utc(at))
            return True

    def lift_due_stoplists(self) -> int:
        """Stop-lists whose end has passed (the background loop; the
        workflow lifts them too, whichever comes first)."""
        with self.ctx.uow() as w:
            apps = entries.due_stoplists(w.s, w.now())
            for app in apps:
                _resume(w, app, actor="system:stoplist", at=aware(app.paused_until))
            return len(apps)

    def record_enrolment(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                         actor: str = "system") -> bool:
        at = utc(at)
        with self.ctx.uow() as w:
            if not _claimed(w, key):
                return False
            ref = _live(w, referral_id, application_id, refusal="enrolment_referral_not_live")
            ref.status, ref.state, ref.outcome, ref.ended_at = "enrolled", "enrolled", "enrolled", at
            w.s.flush()
            places.enrol(w.s, ref.place_id)
            app = entries.lock(w.s, ref.application_id)
            app.status, app.updated_at = "enrolled", w.now()
            w.emit("referral.enrolled.v1", f"referral:{ref.id}", referrals.event_data(w.s, ref, app.parent_id), time=at)
            closed(w, app.id, app.parent_id, "enrolled", at)
            w.audit(actor, "referral.enrolled", f"application:{app.id}",
                    {"referral_id": ref.id, "kindergarten": ref.kindergarten_id}, at=at)
            return True

    def record_referral(self, *, key: str, referral_id: str, application_id: str, at: datetime, event: str,
                        state: str, deadline: datetime | None = None, needs_confirmation: bool | None = None,
                        reason: str | None = None, actor: str = "system") -> bool:
        """A change the workflow made that leaves the register untouched
        (issued, privilege confirmed, certificate requested, extended): keep
        the referral's state and deadline, publish the fact."""
        at = utc(at)
        with self.ctx.uow() as w:
            if not _claimed(w, key):
                return False
            ref = referrals.lock(w.s, referral_id, application_id)
            if event == "referral.issued" and ref.announced:
                # The allocation announced it: a workflow started without
                # saying so (by a starter of the previous release during an
                # upgrade) must not tell the parent twice.
                return True
            # The entry's parent alone: the entry's row would open the
            # child's sealed PIN and names, which the fact does not carry.
            parent_id = entries.parent_of(w.s, ref.application_id)
            if ref.status == "live":
                ref.state = state
                if deadline is not None:
                    ref.deadline = utc(deadline)
                # Kept so the referral could be resumed elsewhere as it stands.
                if event == "referral.extended":
                    ref.extended = True
                elif event == "referral.privilege_confirmed":
                    ref.confirmed_at = at
            extra: dict[str, Any] = {"deadline": utc(deadline).isoformat() if deadline else None}
            if event == "referral.issued":
                # The fact the allocation announces, for a referral it did not.
                data = referrals.issued_data(
                    ref.id, ref.application_id, ref.kindergarten_id, w.s.get(Kindergarten, ref.kindergarten_id),
                    parent_id, deadline=extra["deadline"], category=ref.category, cohort=ref.cohort,
                    language=ref.language,
                    needs_confirmation=ref.needs_confirmation if needs_confirmation is None else needs_confirmation)
            else:
                if event == "referral.certificate_requested":
                    extra["reason"] = reason
                data = referrals.event_data(w.s, ref, parent_id, **extra)
            w.emit(f"{event}.v1", f"referral:{ref.id}", data, time=at)
            w.audit(actor, event, f"application:{ref.application_id}",
                    {"referral_id": ref.id, "state": state, "deadline": extra["deadline"], "reason": reason}, at=at)
            return True

    def entry_status(self, application_id: str) -> str:
        """The entry's status now: the workflow asks after a place returned
        whether the child left the queue ("aged_out") instead of waiting."""
        with self.ctx.read() as w:
            return entries.lock(w.s, application_id, lock=False).status

    # ------------------------------------------------ workflows to start

    def unstarted(self, limit: int = 100) -> list[dict]:
        """Referrals whose workflow has not been started yet (after a crash
        too): the starter starts them; the workflow id makes it idempotent."""
        with self.ctx.read() as w:
            rows = referrals.unstarted(w.s, limit)
            if not rows:
                return []       # the starter looks four times a second: no policy read for nothing
            policy, _ = w.policy()
            windows = {k: getattr(policy, k) for k in ("confirm_working_days", "enrol_working_days",
                                                       "certificate_valid_days", "extension_days", "stoplist_days")}
            return [{
                "referral_id": str(r["id"]), "application_id": r["application_id"],
                "kindergarten": r["kindergarten_id"], "cohort": r["cohort"], "language": r["language"],
                "category": r["category"], "for_category": r["for_category"] or None,
                "needs_confirmation": r["needs_confirmation"], "issued_at": aware(r["issued_at"]),
                # The allocation wrote its referral.issued fact: the workflow does not.
                "announced": bool(r["announced"]),
                # An imported referral continues where the previous system left it.
                "resume": None if r["external_id"] is None else {
                    "state": r["state"], "deadline": aware(r["deadline"]), "extended": r["extended"],
                    "confirmed_at": aware(r["confirmed_at"])},
                "country": policy.country, "parent_id": r["parent_id"], "policy": dict(windows),
            } for r in rows]

    def mark_started(self, referral_id: int | str) -> None:
        self.mark_started_many([referral_id])

    def mark_started_many(self, referral_ids: list[int | str]) -> None:
        with self.ctx.uow() as w:
            referrals.mark_started_many(w.s, sorted(int(r) for r in referral_ids), w.now())


def _resume(w: UnitOfWork, app: Application, *, actor: str, at: datetime) -> bool:
    if app.status != "paused":
        return False  # already lifted (by the other of the two paths)
    if leaves_queue(w, app, at):
        # The stop-list ends on or after the school-age birthday: out, not back.
        age_out(w, app, at=at)
        return True
    app.status, app.paused_until, app.updated_at = "queued", None, w.now()
    w.emit("application.resumed.v1", f"application:{app.id}",
           {"application_id": app.id, **({"parent_id": app.parent_id} if app.parent_id else {})}, time=at)
    w.audit(actor, "application.resumed", f"application:{app.id}", {}, at=at)
    w.entry_waits(f"stop-list of {app.id} ended", app)
    w.entry_moved(app.cohort, app.preferences)
    return True
