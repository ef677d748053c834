"""Queue entries (DOMAIN.md section 3): a child joins (one entry per child
PIN, whoever registers it), changes its preferences, leaves at once, or
loses a privilege found false and goes back to the general queue with its
queue date. Each use case is one transaction with its events and audit."""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kezek.logging import get_logger
from services.queue.domain.commands import JoinQueue
from services.queue.domain.entries import check_entry, check_preferences
from services.queue.domain.policy import GENERAL
from services.queue.domain.refusals import NotFound, Refused
from services.queue.models import CLOSED, Application
from services.queue.store import entries as store, kindergartens
from services.queue.store.times import aware, utc
from services.queue.usecases.closing import closed
from services.queue.usecases.work import Actor, Context, UnitOfWork

log = get_logger(__name__)


class Entries:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def join(self, cmd: JoinQueue, *, actor: Actor, source_event_id: str | None = None) -> str:
        """A new queue entry; its id (the same one again for a repeat of the same submission)."""
        with self.ctx.uow() as w:
            return join(w, cmd, actor=actor, source_event_id=source_event_id)

    def join_submitted(self, s: Session, event) -> None:
        """application.submitted (registration) -> a queue entry, in the
        consumer's transaction. A second application for a known PIN is
        refused (audited, no entry); the registration service learns of it
        from application.refused."""
        data = event.data
        cmd = JoinQueue(
            application_id=data["application_id"], pin=data["child_pin"], surname=data["child_surname"],
            name=data["child_name"], patronymic=data.get("child_patronymic"),
            birth_date=date.fromisoformat(data["child_birth_date"]), category=data["category"],
            language=data["language"], preferences=tuple(data["preferences"]),
            queue_date=aware(datetime.fromisoformat(data["queue_date"])), parent_id=data["parent_id"],
            locale=data.get("locale", "ru"))
        w = self.ctx.within(s)
        try:
            with s.begin_nested():
                join(w, cmd, actor=f"event:{event.id}", source_event_id=event.id)
        except Refused as exc:
            w.audit(f"event:{event.id}", "application.refused", f"application:{cmd.application_id}",
                    {"reason": exc.message, "field": exc.field, "code": exc.code})
            w.emit("application.refused.v1", f"application:{cmd.application_id}", {
                "application_id": cmd.application_id, "parent_id": cmd.parent_id,
                "field": exc.field or "", "reason": exc.message, "code": exc.code, "params": exc.params})
            if exc.code != "application_id_taken":  # that id is another child's live entry
                closed(w, cmd.application_id, cmd.parent_id, "refused", w.now())

    def remove(self, app_id: str, *, actor: Actor, reason: str = "") -> None:
        """The entry leaves at once; joining again starts a new queue date."""
        with self.ctx.uow() as w:
            app = store.lock(w.s, app_id)
            if app.status in CLOSED:
                return      # removed already, or left its kindergarten: nothing waits
            if app.status == "referred":
                raise Refused("entry_holds_referral", field="application_id")
            if app.status == "enrolled":
                raise Refused("entry_enrolled", field="application_id")
            if app.status == "aged_out":
                raise Refused("entry_aged_out", field="application_id")
            now = w.now()
            app.status, app.removed_at, app.paused_until = "removed", now, None
            app.removal_reason, app.updated_at = (reason or "")[:200] or None, now
            w.emit("application.removed.v1", f"application:{app_id}", {
                "application_id": app_id, "parent_id": app.parent_id, "reason": reason or ""}, time=now)
            closed(w, app_id, app.parent_id, "removed", now)
            w.audit(actor, "application.removed", f"application:{app_id}", {"reason": reason})
            w.entry_moved(app.cohort, app.preferences)

    def set_preferences(self, app_id: str, preferences: Iterable[str], *, actor: Actor) -> None:
        prefs = list(preferences)
        with self.ctx.uow() as w:
            app = store.lock(w.s, app_id)
            if app.status not in ("queued", "paused"):
                raise Refused("preferences_not_waiting", field="application_id", status=app.status)
            check_preferences(prefs, app.language, kindergartens.languages(w.s, prefs))
            before = list(app.preferences)
            app.preferences, app.updated_at = prefs, w.now()
            w.audit(actor, "application.preferences_changed", f"application:{app_id}", {"from": before, "to": prefs})
            w.entry_waits(f"application {app_id} changed preferences", app)
            w.entry_moved(app.cohort, before, prefs)

    def revoke_privilege(self, app_id: str, *, actor: Actor, reason: str) -> None:
        """A privilege found false: the child returns to the general queue
        with its queue date (no referral involved)."""
        with self.ctx.uow() as w:
            to_general(w, store.lock(w.s, app_id), actor=actor, reason=reason, at=w.now())

    def privilege_revoked(self, s: Session, event) -> None:
        """verification.privilege_revoked (a privilege found false) -> the
        entry moves to the general queue with its queue date, in the
        consumer's transaction. A repeat, or the referral workflow having
        done it already (`referral_rejected`), finds the child general and
        changes nothing; nothing in the queue ever sets a privilege again on
        an existing entry, so a later event cannot restore it."""
        data = event.data
        try:
            app = store.lock(s, data["application_id"])
        except NotFound:
            # Not ours (e.g. an application the queue refused): nothing to
            # move, and a retry would never succeed, so it is skipped.
            log.warning("queue.privilege_revoked.unknown_application", application_id=data["application_id"],
                        event_id=event.id)
            return
        at = aware(datetime.fromisoformat(data["revoked_at"]))
        to_general(self.ctx.within(s), app, actor=f"event:{event.id}", reason=data["reason"], at=utc(at))


def join(w: UnitOfWork, cmd: JoinQueue, *, actor: Actor, source_event_id: str | None) -> str:
    s = w.s
    policy, _ = w.policy()
    if cmd.application_id:
        existing = s.get(Application, cmd.application_id)
        if existing is not None:
            if existing.pin == cmd.pin:
                return existing.id  # the same submission again
            raise Refused("application_id_taken", field="application_id", application_id=cmd.application_id)
    now = w.now()
    birth = check_entry(cmd, policy, kindergartens.languages(s, cmd.preferences), w.ctx.today(policy))
    if store.id_of_pin(s, cmd.pin):
        raise Refused("pin_taken", field="pin")
    queue_date = utc(cmd.queue_date) if cmd.queue_date else now
    app_id = cmd.application_id or f"q-{uuid.uuid4()}"
    try:
        store.insert(s, store.new_row(cmd, app_id, birth, queue_date, policy, now), source_event_id=source_event_id)
    except IntegrityError:
        # Two registrations of one child at once: the partial unique index decides.
        raise Refused("pin_taken", field="pin") from None
    w.emit("application.queued.v1", f"application:{app_id}", queued_data(cmd, app_id, birth, queue_date), time=now)
    w.audit(actor, "application.queued", f"application:{app_id}", queued_audit(cmd, queue_date))
    w.request_allocation(f"application {app_id} joined", pools=[(k, birth.year, cmd.language) for k in cmd.preferences])
    w.entry_moved(birth.year, cmd.preferences)
    return app_id


def queued_data(cmd: JoinQueue, app_id: str, birth: date, queue_date: datetime) -> dict:
    return {"application_id": app_id, "parent_id": cmd.parent_id, "category": cmd.category,
            "cohort": birth.year, "language": cmd.language, "queue_date": queue_date.isoformat(),
            "preferences": list(cmd.preferences)}


def queued_audit(cmd: JoinQueue, queue_date: datetime) -> dict:
    return {"category": cmd.category, "queue_date": queue_date.isoformat(), "preferences": list(cmd.preferences)}


def to_general(w: UnitOfWork, app: Application, *, actor: Actor, reason: str | None, at: datetime) -> bool:
    """The child loses its privilege and waits in the general queue with its
    queue date (a privilege rejected or found false). False if it was general."""
    if app.category == GENERAL:
        return False
    before = app.category
    app.category, app.updated_at = GENERAL, w.now()
    w.emit("application.returned_to_general_queue.v1", f"application:{app.id}", {
        "application_id": app.id, "parent_id": app.parent_id, "from_category": before,
        "queue_date": aware(app.queue_date).isoformat(), "reason": reason or ""}, time=at)
    w.audit(actor, "application.returned_to_general_queue", f"application:{app.id}",
            {"from_category": before, "reason": reason}, at=at)
    w.entry_waits(f"application {app.id} returned to the general queue", app)
    w.entry_moved(app.cohort, app.preferences)
    return True
