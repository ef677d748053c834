"""The move from the old portal (`kezek import`, DOMAIN.md section 3): queue
entries, live referrals and free places in batches, each batch one
transaction of bulk statements, each row checked by the same rules as one
at a time and refused on its own. Ids derived from the export make every
batch idempotent."""
from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.queue.domain.commands import ImportReferral, JoinQueue, PublishPlaces
from services.queue.domain.entries import check_entry
from services.queue.domain.imports import check_imported_referral
from services.queue.domain.places import check_publication
from services.queue.domain.refusals import Refused
from services.queue.models import OPEN_POOL, Kindergarten
from services.queue.store import entries, kindergartens, places, referrals, runs
from services.queue.store.times import aware, utc
from services.queue.usecases.entries import queued_audit, queued_data
from services.queue.usecases.work import Actor, Context, UnitOfWork, name


@dataclass(frozen=True)
class Joined:
    """A row of an imported batch that is in the queue."""
    application_id: str
    created: bool        # False: the same entry (id and PIN) was there already


class Imports:
    def __init__(self, ctx: Context):
        self.ctx = ctx

    def join_many(self, cmds: list[JoinQueue], *, actor: Actor, dry_run: bool = False) -> list[Joined | Refused]:
        """Many queue entries in one transaction, with the rules of
        `Entries.join` for each: one live entry per child PIN, the given queue
        date kept, an application.queued event and an audit row each. A row
        the rules refuse is answered with its refusal and the others go on;
        the rows are written in bulk, all or none. The answer is in the order
        of `cmds`. `dry_run`: check only, write nothing."""
        def attempt() -> list[Joined | Refused]:
            if dry_run:
                with self.ctx.read() as w:   # closed without a commit
                    return self._join_many(w, cmds, actor=actor, write=False)
            with self.ctx.uow() as w:
                return self._join_many(w, cmds, actor=actor, write=True)
        # A child of the batch joined meanwhile by another way (the partial
        # unique index refused the bulk insert): nothing was written; checked
        # again, that row is refused like any other.
        return self.ctx.retried(attempt, on=(IntegrityError,), attempts=3)

    def _join_many(self, w: UnitOfWork, cmds: list[JoinQueue], *, actor: Actor,
                   write: bool) -> list[Joined | Refused]:
        out: list[Joined | Refused | None] = [None] * len(cmds)
        now = w.now()
        policy, _ = w.policy()
        today = w.ctx.today(policy)
        have = entries.pins_of(w.s, [cmd.application_id for cmd in cmds if cmd.application_id])
        taught = kindergartens.languages(w.s, {k for cmd in cmds for k in cmd.preferences})
        fresh: list[tuple[int, date]] = []
        for i, cmd in enumerate(cmds):
            known = have.get(cmd.application_id) if cmd.application_id else None
            if known is not None:
                out[i] = (Joined(cmd.application_id, False) if known == cmd.pin else
                          Refused("application_id_taken", field="application_id", application_id=cmd.application_id))
                continue
            try:
                fresh.append((i, check_entry(cmd, policy, taught, today)))
            except Refused as exc:
                out[i] = exc
        taken = entries.live_pins(w.s, [cmds[i].pin for i, _ in fresh])
        rows, events, audits = [], [], []
        for i, birth in fresh:
            cmd = cmds[i]
            app_id = cmd.application_id or f"q-{uuid.uuid4()}"
            if cmd.pin in taken:  # in the queue already, or earlier in this batch
                out[i] = Refused("pin_taken", field="pin")
                continue
            if app_id in have:    # the same id earlier in this batch, for another child
                out[i] = Refused("application_id_taken", field="application_id", application_id=app_id)
                continue
            taken.add(cmd.pin)
            have[app_id] = cmd.pin
            queue_date = utc(cmd.queue_date) if cmd.queue_date else now
            out[i] = Joined(app_id, True)
            rows.append(entries.new_row(cmd, app_id, birth, queue_date, policy, now))
            # Imported: the projector names the child by its entry at once (no
            # registration event with its PIN comes; the public projection).
            events.append((f"application:{app_id}", queued_data(cmd, app_id, birth, queue_date) | {"imported": True}))
            audits.append({"action": "application.queued", "subject": f"application:{app_id}",
                           "details": queued_audit(cmd, queue_date)})
        if rows and write:
            entries.insert_many(w.s, rows)
            w.emit_many("application.queued.v1", events, time=now)
            w.audit_many(actor, audits, at=now)
            w.request_allocation(f"{len(rows)} applications joined",
                                 pools=[(k, r["cohort"], r["language"]) for r in rows for k in r["preferences"]])
            w.positions_moved({(r["cohort"], k) for r in rows for k in r["preferences"]})
        return out  # type: ignore[return-value]

    def referral(self, *, referral_id: str, application_id: str, kindergarten: str, cohort: int, language: str,
                 category: str, for_category: str | None, state: str, issued_at: datetime, deadline: datetime,
                 needs_confirmation: bool, actor: Actor, extended: bool = False,
                 confirmed_at: datetime | None = None) -> bool:
        """One live referral moved from a previous system; see `referrals_many`.
        False if it was imported before."""
        [got] = self.referrals_many([ImportReferral(
            referral_id=referral_id, application_id=application_id, kindergarten=kindergarten, cohort=cohort,
            language=language, category=category, for_category=for_category, state=state, issued_at=issued_at,
            deadline=deadline, needs_confirmation=needs_confirmation, extended=extended,
            confirmed_at=confirmed_at)], actor=actor)
        if isinstance(got, Refused):
            raise got
        return got

    def referrals_many(self, items: list[ImportReferral], *, actor: Actor) -> list[bool | Refused]:
        """Live referrals moved from a previous system (the Balalyk
        migration), in one transaction: each held place joins the register
        as held, each entry becomes referred, and the workflow starter
        resumes each workflow in its recorded state, to its recorded deadline
        (ReferralInput.resume). Per item, in order: True if imported now,
        False if it was imported before, or the refusal (the others go on)."""
        def attempt() -> list[bool | Refused]:
            with self.ctx.uow() as w:
                return self._referrals_many(w, items, actor=actor)
        # A referral or a pool was written meanwhile by another way: nothing
        # of this batch was; checked again, it is seen.
        return self.ctx.retried(attempt, on=(IntegrityError,), attempts=3)

    def _referrals_many(self, w: UnitOfWork, items: list[ImportReferral], *, actor: Actor) -> list[bool | Refused]:
        out: list[bool | Refused] = []
        now = w.now()
        policy, version = w.policy()
        this_year = w.ctx.today(policy).year
        known = referrals.imported_ids(w.s, [it.referral_id for it in items])
        apps = entries.for_import(w.s, sorted({it.application_id for it in items}))
        kgs = kindergartens.many(w.s, {it.kindergarten for it in items})
        status = {app_id: r.status for app_id, r in apps.items()}
        accepted: list[ImportReferral] = []
        for it in items:
            if it.referral_id in known:
                out.append(False)
                continue
            app, kg = apps.get(it.application_id), kgs.get(it.kindergarten)
            try:
                check_imported_referral(it, (status[app.id], app.cohort, app.language) if app else None,
                                        list(kg.languages or []) if kg else None, policy, this_year)
            except Refused as exc:
                out.append(exc)
                continue
            known.add(it.referral_id)
            status[app.id] = "referred"
            accepted.append(it)
            out.append(True)
        if accepted:
            self._hold_imported(w, accepted, apps, kgs, actor=actor, now=now, policy_record={
                **policy.to_dict(), "version": version})
        return out

    def _hold_imported(self, w: UnitOfWork, accepted: list[ImportReferral], apps: dict[str, Any],
                       kgs: dict[str, Kindergarten], *, actor: Actor, now: datetime, policy_record: dict) -> None:
        def key(it: ImportReferral) -> tuple:
            return (it.kindergarten, it.cohort, it.language, it.for_category or OPEN_POOL)
        pools = {k: places.pool(w.s, k[0], k[1], k[2], k[3] or None, create=True)
                 for k in sorted({key(it) for it in accepted})}
        for k, n in Counter(key(it) for it in accepted).items():
            pools[k].held += n
        places.add_publications(w.s, [places.publication(
            it.kindergarten, it.cohort, it.language, it.for_category, 1, publish_at=now, actor=name(actor), now=now,
            published=True) for it in accepted])
        # One "run" per importer and day holds the imported referrals: they
        # were allocated elsewhere, so it records no inputs to recompute.
        run_id = runs.import_run(w.s, f"import by {name(actor)}"[:200], now, policy_record)
        w.s.flush()
        rows = []
        for it in accepted:
            prefs = list(apps[it.application_id].preferences)
            rows.append(dict(
                application_id=it.application_id, place_id=pools[key(it)].id, kindergarten_id=it.kindergarten,
                cohort=it.cohort, language=it.language, for_category=it.for_category or OPEN_POOL,
                category=it.category, needs_confirmation=it.needs_confirmation,
                preference_index=prefs.index(it.kindergarten) if it.kindergarten in prefs else -1,
                status="live", state=it.state, run_id=run_id, issued_at=utc(it.issued_at),
                deadline=utc(it.deadline), external_id=it.referral_id, extended=it.extended,
                confirmed_at=utc(it.confirmed_at) if it.confirmed_at else None))
        ids = dict(zip((it.referral_id for it in accepted), referrals.insert_many(w.s, rows)))
        entries.set_status(w.s, [it.application_id for it in accepted], "referred", now)
        # They leave the waiting: those behind them move up.
        w.positions_moved({(apps[it.application_id].cohort, k) for it in accepted
                           for k in apps[it.application_id].preferences})
        w.audit_many(actor, [
            dict(action="referral.imported", subject=f"application:{it.application_id}",
                 details={"referral_id": ids[it.referral_id], "external_id": it.referral_id,
                          "kindergarten": it.kindergarten, "state": it.state,
                          "deadline": utc(it.deadline).isoformat(), "extended": it.extended,
                          "confirmed_at": utc(it.confirmed_at).isoformat() if it.confirmed_at else None})
            for it in accepted], at=now)
        w.emit_many("referral.imported.v1", [
            (f"referral:{ids[it.referral_id]}",
             imported_data(ids[it.referral_id], it, apps[it.application_id], kgs[it.kindergarten]))
            for it in accepted], time=now)

    def publish_places_many(self, pubs: list[PublishPlaces], *, actor: Actor) -> list[bool | Refused]:
        """Free places published now for many pools at once, in one
        transaction, each with its place.published event and audit row:
        True for each publication made, or its refusal (the others go on)."""
        out: list[bool | Refused] = []
        now = self.ctx.now()
        with self.ctx.uow() as w:
            policy, _ = w.policy()
            this_year = w.ctx.today(policy).year
            taught = kindergartens.languages(w.s, {x.kindergarten for x in pubs})
            ok: list[PublishPlaces] = []
            for x in pubs:
                try:
                    check_publication(x.kindergarten, taught.get(x.kindergarten), x.language, x.count, x.cohort,
                                      x.for_category, policy, this_year)
                except Refused as exc:
                    out.append(exc)
                    continue
                out.append(True)
                ok.append(x)
            if ok:
                self._publish_many(w, ok, actor=actor, now=now)
        return out

    def _publish_many(self, w: UnitOfWork, ok: list[PublishPlaces], *, actor: Actor, now: datetime) -> None:
        def key(x: PublishPlaces) -> tuple:
            return (x.kindergarten, x.cohort, x.language, x.for_category or OPEN_POOL)
        kids = sorted({x.kindergarten for x in ok})
        have = places.lock_pools_of(w.s, kids)
        missing = sorted({key(x) for x in ok} - set(have))
        if missing:
            places.create_pools(w.s, missing)
            have = places.lock_pools_of(w.s, kids)
        added: Counter = Counter()
        for x in ok:
            added[key(x)] += x.count
        places.add_free(w.s, {have[k][0]: n for k, n in added.items()})
        pub_ids = places.add_publications(w.s, [places.publication(
            x.kindergarten, x.cohort, x.language, x.for_category, x.count, publish_at=now, actor=name(actor), now=now,
            published=True) for x in ok])
        free = {k: have[k][1] for k in added}
        events, audits = [], []
        for x, pub_id in zip(ok, pub_ids):
            free[key(x)] += x.count
            subject = f"place:{x.kindergarten}/{x.cohort}/{x.language}"
            events.append((subject, {"kindergarten_id": x.kindergarten, "cohort": x.cohort, "language": x.language,
                                     "for_category": x.for_category, "count": x.count, "free": free[key(x)]}))
            audits.append(dict(action="place.published", subject=subject, details={
                "count": x.count, "for_category": x.for_category, "publication": pub_id, "free": free[key(x)]}))
        w.emit_many("place.published.v1", events, time=now)
        w.audit_many(actor, audits, at=now)
        w.request_allocation(f"{sum(added.values())} places published by {name(actor)}"[:200],
                             pools=[k[:3] for k in added])


def imported_data(rid: int, it: ImportReferral, app: Any, kg: Kindergarten) -> dict:
    """referral.imported: what the caseworkers' worklist needs of a
    referral (and its child) that never passed through registration."""
    data = {"referral_id": str(rid), "external_id": it.referral_id, "application_id": it.application_id,
            "kindergarten_id": it.kindergarten, "kindergarten_name": kg.name, "district": kg.district,
            "state": it.state, "deadline": utc(it.deadline).isoformat(),
            "needs_confirmation": it.needs_confirmation, "extended": it.extended,
            "confirmed_at": utc(it.confirmed_at).isoformat() if it.confirmed_at else None,
            "category": it.category, "for_category": it.for_category, "cohort": it.cohort,
            "language": it.language, "issued_at": utc(it.issued_at).isoformat(), "child_pin": app.pin,
            "child_surname": app.surname, "child_name": app.name, "child_patronymic": app.patronymic,
            "child_birth_date": app.birth_date.isoformat(), "queue_date": aware(app.queue_date).isoformat()}
    if app.parent_id:
        data["parent_id"] = app.parent_id
    return data
