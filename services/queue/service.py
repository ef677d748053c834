"""Queue use cases: load -> rules (domain.py) -> save + outbox rows, one
transaction each.

Allocation is never asked for by a person. Every change that can alter its
outcome (places published or returned, a child joining, a privilege
rejected, a stop-list ended, a new day on which children turn 2) writes an
`allocation_requests` row in its own transaction; the allocator
(`process_requests`, run by the service's background loop) then allocates at
once. Concurrency is made safe by the database: pools with free places are
locked (SELECT ... FOR UPDATE) for the run, place counters carry CHECK
constraints, a partial unique index allows one live referral per child, and
a run whose reads went stale is rolled back and retried.
"""
from __future__ import annotations

import hashlib
import json
import random
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from kezek import calendar as kcal
from kezek import web
from kezek.db import unit_of_work
from kezek.events import new_event
from kezek.logging import get_logger
from services.queue import domain as d
from workflows import rules
from services.queue.models import (OPEN_POOL, AllocationRecord, AllocationRequest, AllocationRun, Application,
                                   AuditEntry, Kindergarten, PlacePool, PolicyVersion, PositionChange,
                                   PublishedPosition, Publication, Referral, outbox)

log = get_logger(__name__)

A = Application.__table__
P = PlacePool.__table__
R = Referral.__table__
RUNS = AllocationRun.__table__
AUDIT = AllocationRecord.__table__
REQ = AllocationRequest.__table__
KG = Kindergarten.__table__
POS = PublishedPosition.__table__
MOVED = PositionChange.__table__
POSITION_CHANGED = "application.position_changed.v1"

try:  # errors of the raw driver, which the bulk writes on PostgreSQL use
    import psycopg
    _DRIVER_ERRORS: tuple = (psycopg.IntegrityError, psycopg.OperationalError)
except ImportError:  # pragma: no cover
    _DRIVER_ERRORS = ()

ALLOCATOR = "system:allocator"
_REFERRAL_COLUMNS = ("application_id", "place_id", "kindergarten_id", "cohort", "language", "for_category",
                     "category", "needs_confirmation", "preference_index", "status", "state", "run_id", "issued_at",
                     "deadline")
# "Lists one of these kindergartens", as one hashed `= ANY` per preference
# position: far faster than `preferences && array` on long lists.
# The list travels as one string, split by the server once (a constant
# then): sending a long array costs the client more than the query.
_LISTS_ANY = " OR ".join(f"preferences[{i + 1}] = ANY(string_to_array(%(w)s, E'\\x1f')::varchar(100)[])"
                         for i in range(d.MAX_PREFERENCES))
ACTIVITY_CONSUMER = "queue.activities"
_BIG_RANK = 1 << 30
_BIG_RUN = 1000  # referrals in one run after which the preference index is tidied at once


def aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything stored here is UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("a moment must carry its time zone")
    return t.astimezone(UTC)


class Refused(web.DomainError):
    """A request the rules or the state do not allow; `field` names the input
    at fault (the service app answers it as 409, or its own status code)."""


class NotFound(Refused):
    status_code = 404


class _StaleRead(Exception):
    """Something the run read changed before it wrote: roll back and retry."""


# A concurrent change won: a CHECK or unique index refused the write, a
# deadlock or serialization failure, or a child changed since it was read.
_RETRYABLE = (IntegrityError, OperationalError, _StaleRead, *_DRIVER_ERRORS)


@dataclass(frozen=True)
class JoinQueue:
    pin: str
    surname: str
    name: str
    category: str
    language: str
    preferences: tuple[str, ...]
    patronymic: str | None = None
    birth_date: date | None = None
    queue_date: datetime | None = None     # kept as given by an import or the registration event
    application_id: str | None = None
    parent_id: str | None = None
    locale: str = "ru"


@dataclass(frozen=True)
class Joined:
    application_id: str
    created: bool        # False: the same entry (id and PIN) was there already


@dataclass(frozen=True)
class PublishPlaces:
    kindergarten: str
    cohort: int
    language: str
    count: int
    for_category: str | None = None


@dataclass(frozen=True)
class ImportReferral:
    """A live referral of a previous system, as it stands there."""
    referral_id: str               # its id there (kept as external_id)
    application_id: str
    kindergarten: str
    cohort: int
    language: str
    category: str
    for_category: str | None
    state: str                     # awaiting_confirmation | awaiting_enrolment
    issued_at: datetime
    deadline: datetime             # the end of the running window, kept exactly
    needs_confirmation: bool
    extended: bool = False         # the one extension is used
    confirmed_at: datetime | None = None


@dataclass(frozen=True)
class Issued:
    referral_id: int
    application_id: str
    place: d.PlaceKey
    for_category: str | None
    preference_index: int


@dataclass
class RunResult:
    run_id: int | None
    issued: list[Issued] = field(default_factory=list)
    candidates: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    positions_published: int = 0


def _chunks(items: list, n: int) -> Iterator[list]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _activity_claim_id(key: str) -> str:
    # processed_events keeps 36-character ids; idempotency keys are longer.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kezek-queue:{key}"))


class QueueService:
    def __init__(self, sessions: sessionmaker[Session], *, country: str = "KG",
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_allocation_requested: Callable[[], None] | None = None):
        self.sessions = sessions
        self.country = country
        self.clock = clock
        self.on_allocation_requested = on_allocation_requested or (lambda: None)

    # ------------------------------------------------------------ helpers

    def now(self) -> datetime:
        return utc(self.clock())

    def today(self, policy: d.Policy | None = None) -> date:
        return kcal.calendar((policy.country if policy else self.country)).local_date(self.now())

    @staticmethod
    def _pg(s: Session) -> bool:
        return s.get_bind().dialect.name == "postgresql"

    def _audit(self, s: Session, actor: str, action: str, subject: str, details: dict | None = None,
               at: datetime | None = None) -> None:
        s.execute(sa.insert(AuditEntry.__table__).values(
            at=at or self.now(), actor=actor, action=action, subject=subject, details=details or {}))

    def _request_allocation(self, s: Session, reason: str, dedupe_key: str | None = None) -> None:
        if dedupe_key is not None:
            exists = s.execute(sa.select(REQ.c.id).where(REQ.c.dedupe_key == dedupe_key)).first()
            if exists:
                return
        s.execute(sa.insert(REQ).values(reason=reason[:200], dedupe_key=dedupe_key, created_at=self.now()))
        s.info["allocation_requested"] = True
        self._wake_after_commit(s)

    def _wake_after_commit(self, s: Session) -> None:
        if not s.info.get("wake_hooked"):
            # Wake the allocator once the request is committed, not before.
            s.info["wake_hooked"] = True

            def wake(session: Session) -> None:
                session.info.pop("wake_hooked", None)
                session.info.pop("allocation_requested", None)
                self.on_allocation_requested()
            sa.event.listen(s, "after_commit", wake, once=True)

    def _positions_moved(self, s: Session, pools: Iterable[tuple[int, str]] | None) -> None:
        """These (cohort, kindergarten) pools' waiting children may have moved
        (None: every pool). Recorded in the change's own transaction, so the
        publication that follows cannot be lost; the allocator loop publishes."""
        rows = sorted(set(pools)) if pools is not None else [(None, None)]
        if not rows:
            return
        if self._pg(s) and len(rows) > 100:
            cohorts, kgs = zip(*rows)
            s.execute(sa.text("INSERT INTO position_changes (cohort, kindergarten_id) "
                              "SELECT * FROM unnest(CAST(:c AS int[]), CAST(:k AS varchar[]))"),
                      {"c": list(cohorts), "k": list(kgs)})
        else:
            s.execute(sa.insert(MOVED), [{"cohort": c, "kindergarten_id": k} for c, k in rows])
        self._wake_after_commit(s)

    def _entry_moved(self, s: Session, cohort: int, *preference_lists: Iterable[str]) -> None:
        self._positions_moved(s, {(cohort, k) for prefs in preference_lists for k in prefs})

    def _uow(self):
        return unit_of_work(self.sessions)

    # ------------------------------------------------------------- policy

    def _policy(self, s: Session) -> tuple[d.Policy, int | None]:
        row = s.execute(sa.select(PolicyVersion.id, PolicyVersion.policy)
                        .order_by(PolicyVersion.id.desc()).limit(1)).first()
        if row is None:
            return d.DEFAULT_POLICY.replace(country=self.country), None
        return d.Policy.from_dict(row.policy), row.id

    def policy(self) -> tuple[d.Policy, int | None]:
        with self.sessions() as s:
            return self._policy(s)

    def change_policy(self, changes: dict[str, Any], *, actor: str, reason: str) -> tuple[d.Policy, int]:
        """A new policy version; the old ones stay, and the change is audited."""
        if not reason or not reason.strip():
            raise Refused("a policy change needs a reason", field="reason", status_code=422)
        with self._uow() as s:
            current, _ = self._policy(s)
            try:
                new = current.replace(**changes)
            except d.DomainError as exc:
                raise Refused(str(exc), field=str(exc).split(":", 1)[0], status_code=422) from None
            removed = {c.code for c in current.categories} - {c.code for c in new.categories}
            if removed:
                in_use = s.execute(sa.select(A.c.category).where(A.c.category.in_(removed),
                                                                 A.c.status != "removed").limit(1)).first()
                if in_use:
                    raise Refused(f"category {in_use[0]!r} is still used by queue entries",
                                  field="categories", status_code=409)
            row = s.execute(sa.insert(PolicyVersion.__table__).values(
                policy=new.to_dict(), changed_at=self.now(), actor=actor, reason=reason.strip()
            ).returning(PolicyVersion.id)).scalar_one()
            before, after = current.to_dict(), new.to_dict()
            diff = {k: {"from": before[k], "to": after[k]} for k in after if before.get(k) != after[k]}
            self._audit(s, actor, "policy.changed", f"policy:{row}", {"changes": diff, "reason": reason})
            self._request_allocation(s, f"policy version {row}")
            self._positions_moved(s, None)  # category ranks may have changed: every pool
            return new, row

    def policy_history(self) -> list[dict]:
        with self.sessions() as s:
            rows = s.execute(sa.select(PolicyVersion).order_by(PolicyVersion.id)).scalars().all()
            return [{"version": r.id, "policy": r.policy, "changed_at": aware(r.changed_at), "actor": r.actor,
                     "reason": r.reason} for r in rows]

    # ------------------------------------------------------- kindergartens

    def save_kindergarten(self, data: dict[str, Any], *, actor: str) -> dict:
        kid = data["id"]
        with self._uow() as s:
            row = s.get(Kindergarten, kid, with_for_update=True)
            values = {k: data[k] for k in ("name", "district", "address", "lat", "lon", "languages") if k in data}
            if row is None:
                s.add(Kindergarten(id=kid, created_at=self.now(), **{"address": "", **values}))
                action = "kindergarten.created"
            else:
                for k, v in values.items():
                    setattr(row, k, v)
                action = "kindergarten.updated"
            self._audit(s, actor, action, f"kindergarten:{kid}", {"values": values})
        return self.kindergarten(kid)

    def kindergarten(self, kid: str) -> dict:
        with self.sessions() as s:
            row = s.get(Kindergarten, kid)
            if row is None:
                raise NotFound(f"no kindergarten {kid!r}", field="kindergarten")
            return _kg_view(row)

    def kindergartens(self, district: str | None = None) -> list[dict]:
        with self.sessions() as s:
            q = sa.select(Kindergarten).order_by(Kindergarten.id)
            if district:
                q = q.where(Kindergarten.district == district)
            return [_kg_view(k) for k in s.scalars(q)]

    # ------------------------------------------------------ queue entries

    def join_queue(self, cmd: JoinQueue, *, actor: str, source_event_id: str | None = None) -> dict:
        with self._uow() as s:
            app_id = self._join(s, cmd, actor=actor, source_event_id=source_event_id)
        return self.application(app_id)

    def handle_submitted(self, s: Session, event) -> None:
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
        try:
            with s.begin_nested():
                self._join(s, cmd, actor=f"event:{event.id}", source_event_id=event.id)
        except Refused as exc:
            self._audit(s, f"event:{event.id}", "application.refused", f"application:{cmd.application_id}",
                        {"reason": exc.message, "field": exc.field})
            outbox.add(s, "application.refused.v1", f"application:{cmd.application_id}", {
                "application_id": cmd.application_id, "parent_id": cmd.parent_id,
                "field": exc.field or "", "reason": exc.message})

    def _join(self, s: Session, cmd: JoinQueue, *, actor: str, source_event_id: str | None) -> str:
        policy, _ = self._policy(s)
        if cmd.application_id:
            existing = s.get(Application, cmd.application_id)
            if existing is not None:
                if existing.pin == cmd.pin:
                    return existing.id  # the same submission again
                raise Refused(f"application id {cmd.application_id!r} is taken", field="application_id")
        prefs = tuple(cmd.preferences)
        kgs = {k.id: k for k in s.scalars(sa.select(Kindergarten).where(Kindergarten.id.in_(prefs)))}
        now = self.now()
        birth = self._check_entry(cmd, policy, kgs, now)
        taken = s.execute(sa.select(A.c.id).where(A.c.pin == cmd.pin, A.c.status != "removed")).first()
        if taken:
            raise Refused("this child is already in the queue (one entry per child)", field="pin")
        queue_date = utc(cmd.queue_date) if cmd.queue_date else now
        app_id = cmd.application_id or f"q-{uuid.uuid4()}"
        try:
            with s.begin_nested():
                s.add(Application(**self._entry_row(cmd, app_id, birth, queue_date, policy, now),
                                  source_event_id=source_event_id))
                s.flush()
        except IntegrityError:
            # Two registrations of one child at once: the partial unique index decides.
            raise Refused("this child is already in the queue (one entry per child)", field="pin") from None
        outbox.add(s, "application.queued.v1", f"application:{app_id}",
                   self._queued_data(cmd, app_id, birth, queue_date), time=now)
        self._audit(s, actor, "application.queued", f"application:{app_id}",
                    {"category": cmd.category, "queue_date": queue_date.isoformat(), "preferences": list(prefs)})
        self._request_allocation(s, f"application {app_id} joined")
        self._entry_moved(s, birth.year, prefs)
        return app_id

    @staticmethod
    def _check_entry(cmd: JoinQueue, policy: d.Policy, kgs: dict[str, Kindergarten], now: datetime) -> date:
        """The rules a new queue entry must meet by itself (the PIN's birth
        date, category, preferences); returns the birth date."""
        try:
            birth = d.birth_date_from_pin(cmd.pin, policy.country)
        except d.DomainError as exc:
            raise Refused(str(exc), field="pin", status_code=422) from None
        if cmd.birth_date is not None and cmd.birth_date != birth:
            if policy.country == "KG":
                raise Refused(f"birth_date {cmd.birth_date} contradicts the PIN, which says {birth}",
                              field="birth_date", status_code=422)
            birth = cmd.birth_date  # a Kazakh IIN's date is only a hint
        if birth > kcal.calendar(policy.country).local_date(now):
            raise Refused("pin: the birth date is in the future", field="pin", status_code=422)
        try:
            policy.category(cmd.category)
        except d.UnknownCategory as exc:
            raise Refused(str(exc), field="category", status_code=422) from None
        prefs = tuple(cmd.preferences)
        if not prefs:
            raise Refused("at least one kindergarten is needed", field="preferences", status_code=422)
        if len(set(prefs)) != len(prefs):
            raise Refused("a kindergarten is listed twice", field="preferences", status_code=422)
        if len(prefs) > d.MAX_PREFERENCES:
            raise Refused(f"at most {d.MAX_PREFERENCES} kindergartens", field="preferences", status_code=422)
        for i, kid in enumerate(prefs):
            kg = kgs.get(kid)
            if kg is None:
                raise Refused(f"no kindergarten {kid!r}", field=f"preferences.{i}", status_code=422)
            if kg.languages and cmd.language not in kg.languages:
                raise Refused(f"kindergarten {kid!r} does not teach in {cmd.language!r} "
                              f"(it teaches in {', '.join(kg.languages)})", field=f"preferences.{i}",
                              status_code=422)
        return birth

    @staticmethod
    def _entry_row(cmd: JoinQueue, app_id: str, birth: date, queue_date: datetime, policy: d.Policy,
                   now: datetime) -> dict:
        return dict(
            id=app_id, pin=cmd.pin, parent_id=cmd.parent_id, country=policy.country,
            surname=cmd.surname.strip(), name=cmd.name.strip(),
            patronymic=(cmd.patronymic or "").strip() or None, birth_date=birth, cohort=birth.year,
            category=cmd.category, claimed_category=cmd.category, queue_date=queue_date,
            language=cmd.language, preferences=list(cmd.preferences), locale=cmd.locale, status="queued",
            created_at=now, updated_at=now)

    @staticmethod
    def _queued_data(cmd: JoinQueue, app_id: str, birth: date, queue_date: datetime) -> dict:
        return {"application_id": app_id, "parent_id": cmd.parent_id, "category": cmd.category,
                "cohort": birth.year, "language": cmd.language, "queue_date": queue_date.isoformat(),
                "preferences": list(cmd.preferences)}

    def join_queue_many(self, cmds: list[JoinQueue], *, actor: str, dry_run: bool = False) -> list[Joined | Refused]:
        """Many queue entries (an import) in one transaction, with the rules of
        `join_queue` for each: one live entry per child PIN, the given queue
        date kept, an application.queued event and an audit row each. A row
        the rules refuse is answered with its refusal and the others go on;
        the rows are written in bulk, all or none. The answer is in the order
        of `cmds`. `dry_run`: check only, write nothing."""
        for attempt in range(3):
            try:
                if dry_run:
                    with self.sessions() as s:   # closed without a commit
                        return self._join_many(s, cmds, actor=actor, write=False)
                with self._uow() as s:
                    return self._join_many(s, cmds, actor=actor, write=True)
            except IntegrityError:
                # A child of the batch joined meanwhile by another way (the
                # partial unique index refused the bulk insert): nothing was
                # written; checked again, that row is refused like any other.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _join_many(self, s: Session, cmds: list[JoinQueue], *, actor: str, write: bool) -> list[Joined | Refused]:
        out: list[Joined | Refused | None] = [None] * len(cmds)
        now = self.now()
        policy, _ = self._policy(s)
        ids = [cmd.application_id for cmd in cmds if cmd.application_id]
        have: dict[str, str] = {}
        for part in _chunks(ids, 5000):
            have.update((i, p) for i, p in s.execute(sa.select(A.c.id, A.c.pin).where(A.c.id.in_(part))))
        wanted = {k for cmd in cmds for k in cmd.preferences}
        kgs = {k.id: k for k in s.scalars(sa.select(Kindergarten).where(Kindergarten.id.in_(wanted)))}
        fresh: list[tuple[int, date]] = []
        for i, cmd in enumerate(cmds):
            known = have.get(cmd.application_id) if cmd.application_id else None
            if known is not None:
                out[i] = (Joined(cmd.application_id, False) if known == cmd.pin else
                          Refused(f"application id {cmd.application_id!r} is taken", field="application_id"))
                continue
            try:
                fresh.append((i, self._check_entry(cmd, policy, kgs, now)))
            except Refused as exc:
                out[i] = exc
        taken: set[str] = set()
        for part in _chunks([cmds[i].pin for i, _ in fresh], 5000):
            taken.update(s.scalars(sa.select(A.c.pin).where(A.c.pin.in_(part), A.c.status != "removed")))
        rows, events, audits = [], [], []
        for i, birth in fresh:
            cmd = cmds[i]
            app_id = cmd.application_id or f"q-{uuid.uuid4()}"
            if cmd.pin in taken:  # in the queue already, or earlier in this batch
                out[i] = Refused("this child is already in the queue (one entry per child)", field="pin")
                continue
            if app_id in have:    # the same id earlier in this batch, for another child
                out[i] = Refused(f"application id {app_id!r} is taken", field="application_id")
                continue
            taken.add(cmd.pin)
            have[app_id] = cmd.pin
            queue_date = utc(cmd.queue_date) if cmd.queue_date else now
            out[i] = Joined(app_id, True)
            rows.append(self._entry_row(cmd, app_id, birth, queue_date, policy, now))
            event = new_event("application.queued.v1", f"application:{app_id}",
                              self._queued_data(cmd, app_id, birth, queue_date), source=outbox.source, time=now)
            events.append({"event_id": event.id, "type": event.type, "subject": event.subject,
                           "payload": event.to_json(), "created_at": now})
            audits.append({"at": now, "actor": actor, "action": "application.queued",
                           "subject": f"application:{app_id}",
                           "details": {"category": cmd.category, "queue_date": queue_date.isoformat(),
                                       "preferences": list(cmd.preferences)}})
        if rows and write:
            s.execute(sa.insert(A), rows)
            s.execute(sa.insert(outbox.table), events)
            s.execute(sa.insert(AuditEntry.__table__), audits)
            self._request_allocation(s, f"{len(rows)} applications joined")
            self._positions_moved(s, {(r["cohort"], k) for r in rows for k in r["preferences"]})
        return out  # type: ignore[return-value]

    def _app(self, s: Session, app_id: str, *, lock: bool = True) -> Application:
        q = sa.select(Application).where(Application.id == app_id)
        if lock:
            q = q.with_for_update()
        app = s.scalars(q).one_or_none()
        if app is None:
            raise NotFound(f"no queue entry {app_id!r}", field="application_id")
        return app

    def remove_from_queue(self, app_id: str, *, actor: str, reason: str = "") -> dict:
        """The entry leaves at once; joining again starts a new queue date."""
        with self._uow() as s:
            app = self._app(s, app_id)
            if app.status == "removed":
                return _app_view(app)
            if app.status == "referred":
                raise Refused("the child holds a referral: cancel it first", field="application_id")
            if app.status == "enrolled":
                raise Refused("the child is enrolled", field="application_id")
            now = self.now()
            app.status, app.removed_at, app.paused_until = "removed", now, None
            app.removal_reason, app.updated_at = (reason or "")[:200] or None, now
            outbox.add(s, "application.removed.v1", f"application:{app_id}", {
                "application_id": app_id, "parent_id": app.parent_id, "reason": reason or ""}, time=now)
            self._audit(s, actor, "application.removed", f"application:{app_id}", {"reason": reason})
            self._entry_moved(s, app.cohort, app.preferences)
            return _app_view(app)

    def set_preferences(self, app_id: str, preferences: Iterable[str], *, actor: str) -> dict:
        prefs = list(preferences)
        with self._uow() as s:
            app = self._app(s, app_id)
            if app.status not in ("queued", "paused"):
                raise Refused(f"preferences can change only while waiting (the entry is {app.status})",
                              field="application_id")
            if not prefs or len(set(prefs)) != len(prefs) or len(prefs) > d.MAX_PREFERENCES:
                raise Refused(f"one to {d.MAX_PREFERENCES} different kindergartens", field="preferences",
                              status_code=422)
            kgs = {k.id: k for k in s.scalars(sa.select(Kindergarten).where(Kindergarten.id.in_(prefs)))}
            for i, kid in enumerate(prefs):
                if kid not in kgs:
                    raise Refused(f"no kindergarten {kid!r}", field=f"preferences.{i}", status_code=422)
                if kgs[kid].languages and app.language not in kgs[kid].languages:
                    raise Refused(f"kindergarten {kid!r} does not teach in {app.language!r}",
                                  field=f"preferences.{i}", status_code=422)
            before = list(app.preferences)
            app.preferences, app.updated_at = prefs, self.now()
            self._audit(s, actor, "application.preferences_changed", f"application:{app_id}",
                        {"from": before, "to": prefs})
            self._request_allocation(s, f"application {app_id} changed preferences")
            self._entry_moved(s, app.cohort, before, prefs)
            return _app_view(app)

    def application(self, app_id: str) -> dict:
        with self.sessions() as s:
            app = self._app(s, app_id, lock=False)
            view = _app_view(app)
            ref = s.execute(sa.select(R).where(R.c.application_id == app_id, R.c.status != "ended")
                            .order_by(R.c.id.desc()).limit(1)).mappings().first()
            view["referral"] = _ref_view(ref) if ref else None
            return view

    def applications_many(self, app_ids: Iterable[str]) -> dict[str, dict]:
        """`application` for many entries at once (reconciling an import);
        ids that are not in the queue are left out."""
        out: dict[str, dict] = {}
        with self.sessions() as s:
            for part in _chunks(list(app_ids), 2000):
                for app in s.scalars(sa.select(Application).where(Application.id.in_(part))):
                    out[app.id] = {**_app_view(app), "referral": None}
                refs = s.execute(sa.select(R).where(R.c.application_id.in_(part), R.c.status != "ended")
                                 .order_by(R.c.id)).mappings()
                for ref in refs:  # the newest last, as `application` shows it
                    out[ref["application_id"]]["referral"] = _ref_view(ref)
        return out

    def application_by_pin(self, pin: str) -> dict:
        with self.sessions() as s:
            row = s.execute(sa.select(A.c.id).where(A.c.pin == pin, A.c.status != "removed")).first()
            if row is None:
                raise NotFound("no queue entry for this PIN", field="pin")
        return self.application(row[0])

    def revoke_privilege(self, app_id: str, *, actor: str, reason: str) -> dict:
        """A privilege found false: the child returns to the general queue
        with its queue date (no referral involved)."""
        with self._uow() as s:
            app = self._app(s, app_id)
            self._to_general(s, app, actor=actor, reason=reason, at=self.now())
            return _app_view(app)

    def handle_privilege_revoked(self, s: Session, event) -> None:
        """verification.privilege_revoked (a privilege found false) -> the
        entry moves to the general queue with its queue date, in the
        consumer's transaction. A repeat, or the referral workflow having
        done it already (`referral_rejected`), finds the child general and
        changes nothing; nothing in the queue ever sets a privilege again on
        an existing entry, so a later event cannot restore it."""
        data = event.data
        app = s.scalars(sa.select(Application).where(Application.id == data["application_id"])
                        .with_for_update()).one_or_none()
        if app is None:
            # Not ours (e.g. an application the queue refused): nothing to
            # move, and a retry would never succeed, so it is skipped.
            log.warning("queue.privilege_revoked.unknown_application", application_id=data["application_id"],
                        event_id=event.id)
            return
        at = aware(datetime.fromisoformat(data["revoked_at"]))
        self._to_general(s, app, actor=f"event:{event.id}", reason=data["reason"], at=utc(at))

    def _to_general(self, s: Session, app: Application, *, actor: str, reason: str | None, at: datetime) -> bool:
        if app.category == d.GENERAL:
            return False
        before = app.category
        app.category, app.updated_at = d.GENERAL, self.now()
        outbox.add(s, "application.returned_to_general_queue.v1", f"application:{app.id}", {
            "application_id": app.id, "parent_id": app.parent_id, "from_category": before,
            "queue_date": aware(app.queue_date).isoformat(), "reason": reason or ""}, time=at)
        self._audit(s, actor, "application.returned_to_general_queue", f"application:{app.id}",
                    {"from_category": before, "reason": reason}, at=at)
        self._request_allocation(s, f"application {app.id} returned to the general queue")
        self._entry_moved(s, app.cohort, app.preferences)
        return True

    # -------------------------------------------------------------- places

    def _pool(self, s: Session, kg: str, cohort: int, language: str, for_category: str | None,
              *, create: bool) -> PlacePool | None:
        cat = for_category or OPEN_POOL
        q = (sa.select(PlacePool).where(PlacePool.kindergarten_id == kg, PlacePool.cohort == cohort,
                                        PlacePool.language == language, PlacePool.for_category == cat)
             .with_for_update())
        pool = s.scalars(q).one_or_none()
        if pool is None and create:
            try:
                with s.begin_nested():
                    pool = PlacePool(kindergarten_id=kg, cohort=cohort, language=language, for_category=cat,
                                     free=0, held=0, enrolled=0)
                    s.add(pool)
                    s.flush()
            except IntegrityError:  # created by a concurrent publication
                pool = s.scalars(q).one()
        return pool

    def _check_place_input(self, s: Session, kg: str, cohort: int, language: str, count: int,
                           for_category: str | None) -> tuple[Kindergarten, d.Policy]:
        policy, _ = self._policy(s)
        k = s.get(Kindergarten, kg)
        if k is None:
            raise NotFound(f"no kindergarten {kg!r}", field="kindergarten")
        if k.languages and language not in k.languages:
            raise Refused(f"kindergarten {kg!r} does not teach in {language!r}", field="language", status_code=422)
        if not isinstance(count, int) or count < 1 or count > 10_000:
            raise Refused("count must be a whole number from 1 to 10000", field="count", status_code=422)
        this_year = self.today(policy).year
        if not (this_year - 8 <= cohort <= this_year):
            raise Refused(f"cohort {cohort} is not a birth year of preschool children", field="cohort",
                          status_code=422)
        if for_category is not None:
            try:
                policy.category(for_category)
            except d.UnknownCategory as exc:
                raise Refused(str(exc), field="for_category", status_code=422) from None
        return k, policy

    def publish_places(self, kg: str, cohort: int, language: str, count: int, *, actor: str,
                       for_category: str | None = None, publish_at: datetime | None = None) -> dict:
        """Free places for a kindergarten, cohort and language, optionally
        reserved for one category, now or on a schedule."""
        now = self.now()
        with self._uow() as s:
            self._check_place_input(s, kg, cohort, language, count, for_category)
            when = utc(publish_at) if publish_at else now
            pub = Publication(kindergarten_id=kg, cohort=cohort, language=language,
                              for_category=for_category or OPEN_POOL, count=count, publish_at=when,
                              actor=actor, created_at=now)
            s.add(pub)
            s.flush()
            if when <= now:
                self._apply_publication(s, pub, now)
            else:
                self._audit(s, actor, "place.scheduled", f"place:{kg}/{cohort}/{language}",
                            {"count": count, "for_category": for_category, "publish_at": when.isoformat(),
                             "publication": pub.id})
            return {"publication": pub.id, "published": pub.published_at is not None,
                    "publish_at": when, **self._pool_view(s, kg, cohort, language, for_category)}

    def _apply_publication(self, s: Session, pub: Publication, now: datetime) -> None:
        pool = self._pool(s, pub.kindergarten_id, pub.cohort, pub.language, pub.for_category or None, create=True)
        pool.free += pub.count
        pub.published_at = now
        cat = pub.for_category or None
        outbox.add(s, "place.published.v1", f"place:{pub.kindergarten_id}/{pub.cohort}/{pub.language}", {
            "kindergarten_id": pub.kindergarten_id, "cohort": pub.cohort, "language": pub.language,
            "for_category": cat, "count": pub.count, "free": pool.free}, time=now)
        self._audit(s, pub.actor, "place.published", f"place:{pub.kindergarten_id}/{pub.cohort}/{pub.language}",
                    {"count": pub.count, "for_category": cat, "publication": pub.id, "free": pool.free})
        self._request_allocation(s, f"{pub.count} places published at {pub.kindergarten_id}")

    def publish_due(self) -> int:
        """Scheduled publications whose moment has come (the background loop)."""
        now = self.now()
        with self._uow() as s:
            q = (sa.select(Publication).where(Publication.published_at.is_(None), Publication.publish_at <= now)
                 .order_by(Publication.id).limit(100).with_for_update(skip_locked=True))
            due = list(s.scalars(q))
            for pub in due:
                self._apply_publication(s, pub, now)
            return len(due)

    def publish_places_many(self, pubs: list[PublishPlaces], *, actor: str) -> list[bool | Refused]:
        """Free places published now for many pools at once (an import), in
        one transaction, each with its place.published event and audit row:
        True for each publication made, or its refusal (the others go on)."""
        out: list[bool | Refused] = []
        now = self.now()
        with self._uow() as s:
            policy, _ = self._policy(s)
            this_year = self.today(policy).year
            kgs = {k.id: k for k in s.scalars(sa.select(Kindergarten).where(
                Kindergarten.id.in_({x.kindergarten for x in pubs})))}
            ok: list[PublishPlaces] = []
            for x in pubs:
                k = kgs.get(x.kindergarten)
                if k is None:
                    out.append(NotFound(f"no kindergarten {x.kindergarten!r}", field="kindergarten"))
                elif k.languages and x.language not in k.languages:
                    out.append(Refused(f"kindergarten {x.kindergarten!r} does not teach in {x.language!r}",
                                       field="language", status_code=422))
                elif not isinstance(x.count, int) or not 1 <= x.count <= 10_000:
                    out.append(Refused("count must be a whole number from 1 to 10000", field="count", status_code=422))
                elif not this_year - 8 <= x.cohort <= this_year:
                    out.append(Refused(f"cohort {x.cohort} is not a birth year of preschool children",
                                       field="cohort", status_code=422))
                elif x.for_category is not None and x.for_category not in policy.codes():
                    out.append(Refused(f"unknown category {x.for_category!r}", field="for_category", status_code=422))
                else:
                    out.append(True)
                    ok.append(x)
            if not ok:
                return out
            key = lambda x: (x.kindergarten, x.cohort, x.language, x.for_category or OPEN_POOL)  # noqa: E731
            kids = sorted({x.kindergarten for x in ok})

            def pools() -> dict[tuple, tuple[int, int]]:
                rows = s.execute(sa.select(P.c.id, P.c.kindergarten_id, P.c.cohort, P.c.language, P.c.for_category,
                                           P.c.free).where(P.c.kindergarten_id.in_(kids)).order_by(P.c.id)
                                 .with_for_update())
                return {(r.kindergarten_id, r.cohort, r.language, r.for_category): (r.id, r.free) for r in rows}
            have = pools()
            missing = sorted({key(x) for x in ok} - set(have))
            if missing:
                ins = (postgresql.insert(P) if self._pg(s) else sqlite.insert(P)).on_conflict_do_nothing()
                s.execute(ins, [dict(kindergarten_id=k, cohort=c, language=lang, for_category=cat, free=0, held=0,
                                     enrolled=0) for k, c, lang, cat in missing])
                have = pools()
            added = Counter()
            for x in ok:
                added[key(x)] += x.count
            s.execute(sa.update(P).where(P.c.id == sa.bindparam("pid")).values(free=P.c.free + sa.bindparam("n")),
                      [{"pid": have[k][0], "n": n} for k, n in added.items()])
            pub_ids = s.execute(sa.insert(Publication.__table__).returning(Publication.__table__.c.id,
                                                                           sort_by_parameter_order=True), [
                dict(kindergarten_id=x.kindergarten, cohort=x.cohort, language=x.language,
                     for_category=x.for_category or OPEN_POOL, count=x.count, publish_at=now, published_at=now,
                     actor=actor, created_at=now) for x in ok]).scalars().all()
            free = {k: have[k][1] for k in added}
            events, audits = [], []
            for x, pub_id in zip(ok, pub_ids):
                free[key(x)] += x.count
                subject = f"place:{x.kindergarten}/{x.cohort}/{x.language}"
                e = new_event("place.published.v1", subject, {
                    "kindergarten_id": x.kindergarten, "cohort": x.cohort, "language": x.language,
                    "for_category": x.for_category, "count": x.count, "free": free[key(x)]},
                    source=outbox.source, time=now)
                events.append({"event_id": e.id, "type": e.type, "subject": e.subject, "payload": e.to_json(),
                               "created_at": now})
                audits.append(dict(at=now, actor=actor, action="place.published", subject=subject, details={
                    "count": x.count, "for_category": x.for_category, "publication": pub_id, "free": free[key(x)]}))
            s.execute(sa.insert(outbox.table), events)
            s.execute(sa.insert(AuditEntry.__table__), audits)
            self._request_allocation(s, f"{sum(added.values())} places published by {actor}"[:200])
        return out

    def withdraw_places(self, kg: str, cohort: int, language: str, count: int, *, actor: str,
                        for_category: str | None = None) -> dict:
        """Takes away free places only; never a held one."""
        now = self.now()
        with self._uow() as s:
            self._check_place_input(s, kg, cohort, language, count, for_category)
            pool = self._pool(s, kg, cohort, language, for_category, create=False)
            free = pool.free if pool else 0
            if count > free:
                raise Refused(f"only {free} free places to withdraw (held places cannot be withdrawn)",
                              field="count")
            pool.free -= count
            s.add(Publication(kindergarten_id=kg, cohort=cohort, language=language,
                              for_category=for_category or OPEN_POOL, count=-count, publish_at=now,
                              published_at=now, actor=actor, created_at=now))
            outbox.add(s, "place.withdrawn.v1", f"place:{kg}/{cohort}/{language}", {
                "kindergarten_id": kg, "cohort": cohort, "language": language, "for_category": for_category,
                "count": count, "free": pool.free}, time=now)
            self._audit(s, actor, "place.withdrawn", f"place:{kg}/{cohort}/{language}",
                        {"count": count, "for_category": for_category, "free": pool.free})
            return self._pool_view(s, kg, cohort, language, for_category)

    def _pool_view(self, s: Session, kg: str, cohort: int, language: str, for_category: str | None) -> dict:
        row = s.execute(sa.select(P.c.free, P.c.held, P.c.enrolled).where(
            P.c.kindergarten_id == kg, P.c.cohort == cohort, P.c.language == language,
            P.c.for_category == (for_category or OPEN_POOL))).first()
        free, held, enrolled = row if row else (0, 0, 0)
        return {"kindergarten": kg, "cohort": cohort, "language": language, "for_category": for_category,
                "free": free, "held": held, "enrolled": enrolled}

    def places(self, kg: str | None = None) -> list[dict]:
        with self.sessions() as s:
            q = sa.select(P).order_by(P.c.kindergarten_id, P.c.cohort, P.c.language, P.c.for_category)
            if kg:
                q = q.where(P.c.kindergarten_id == kg)
            return [{"kindergarten": r.kindergarten_id, "cohort": r.cohort, "language": r.language,
                     "for_category": r.for_category or None, "free": r.free, "held": r.held,
                     "enrolled": r.enrolled} for r in s.execute(q)]

    def scheduled_publications(self) -> list[dict]:
        with self.sessions() as s:
            q = sa.select(Publication).where(Publication.published_at.is_(None)).order_by(Publication.publish_at)
            return [{"publication": p.id, "kindergarten": p.kindergarten_id, "cohort": p.cohort,
                     "language": p.language, "for_category": p.for_category or None, "count": p.count,
                     "publish_at": aware(p.publish_at)} for p in s.scalars(q)]

    # ---------------------------------------------------------- allocation

    def process_requests(self) -> RunResult | None:
        """Allocates if anything asked for it since the last run, then
        publishes the positions that moved (the run's and other changes')."""
        with self.sessions() as s:
            pending = s.execute(sa.select(REQ.c.id).where(REQ.c.done_at.is_(None)).limit(1)).first()
        run = self.allocate() if pending else None
        t = time.perf_counter()
        published = self.publish_positions()
        if run is not None:
            run.timings["positions"] = time.perf_counter() - t
            run.positions_published = published
        return run

    # ----------------------------------------------------------- positions

    def publish_positions(self, *, attempts: int = 5) -> int:
        """application.position_changed for every waiting child whose position
        (domain.position: its rank among the waiting children of its cohort
        who list its first preference) differs from the one last published,
        computed only for the pools a change marked. Its own transaction,
        right after the changes; re-runnable: a failure leaves the marks, and
        a child whose published position is current gets no second event.
        Returns the number of events written."""
        for attempt in range(attempts):
            try:
                with unit_of_work(self.sessions) as s:
                    return self._publish_positions(s)
            except _RETRYABLE as exc:
                if attempt == attempts - 1:
                    raise
                log.info("positions.retry", attempt=attempt + 1, reason=type(exc).__name__)
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def _publish_positions(self, s: Session) -> int:
        if s.execute(sa.select(MOVED.c.id).limit(1)).first() is None:
            return 0
        pg = self._pg(s)
        if pg:
            # One publisher at a time: two would compare against the same
            # last-published positions and announce one move twice.
            s.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('kezek.queue.positions'))"))
        marked = s.execute(sa.delete(MOVED).returning(MOVED.c.cohort, MOVED.c.kindergarten_id)).all()
        if not marked:
            return 0
        pools = None if any(c is None for c, _ in marked) else sorted({(c, k) for c, k in marked})
        policy, _ = self._policy(s)
        publish = self._publish_positions_pg if pg else self._publish_positions_generic
        n = publish(s, pools, policy)
        log.info("positions.published", pools=len(pools) if pools is not None else "all", events=n)
        return n

    def _publish_positions_pg(self, s: Session, pools: list[tuple[int, str]] | None, policy: d.Policy) -> int:
        """Set-based: rank every waiting child in the marked pools (a window
        over the unnested preferences), keep each child's rank in its first
        preference, compare with queue_positions, and write the changed ones
        and their outbox rows in the same statement, never through Python."""
        rank = " ".join(f"WHEN '{c.code}' THEN {c.rank}" for c in policy.categories)
        params: dict[str, Any] = {"now": self.now(), "time": self.now().isoformat()}
        if pools is None:
            in_pools, prefilter = "", ""
        else:
            # One hashed `= ANY` over "cohort/kindergarten" keys, not a join
            # with the pools: joined, the planner may pair every pool with
            # every child of its cohort first (quadratic at national scale).
            params["pools"] = [f"{c}/{k}" for c, k in pools]
            in_pools = "AND CAST(a.cohort AS text) || '/' || p.kg = ANY(CAST(%(pools)s AS text[])) "
            cohorts = sorted({c for c, _ in pools})
            kgs = sorted({k for _, k in pools})
            # A few pools (a join, a removal): the GIN index finds their
            # children. Many (a national run): reading the table is cheaper.
            if len(kgs) <= 50:
                params.update(ck=cohorts, kk=kgs)
                prefilter = ("AND a.cohort = ANY(CAST(%(ck)s AS int[])) "
                             "AND a.preferences && CAST(%(kk)s AS varchar(100)[]) ")
            else:
                prefilter = ""
        sql = f"""
            WITH listing AS (
                SELECT a.id, a.parent_id, p.kg, a.preferences[1] AS first,
                       row_number() OVER (PARTITION BY a.cohort, p.kg ORDER BY
                           CASE a.category {rank} ELSE {_BIG_RANK} END, a.queue_date, a.id COLLATE "C") AS pos
                FROM applications a CROSS JOIN LATERAL unnest(a.preferences) AS p(kg)
                WHERE a.status = 'queued' {prefilter}{in_pools}
            ), changed AS (
                SELECT l.id, l.parent_id, l.kg, CAST(l.pos AS int) AS pos, q.position AS previous,
                       CAST(gen_random_uuid() AS text) AS event_id
                FROM listing l LEFT JOIN queue_positions q ON q.application_id = l.id
                WHERE l.kg = l.first
                  AND (q.position IS DISTINCT FROM l.pos OR q.kindergarten_id IS DISTINCT FROM l.kg)
            ), updated AS (
                UPDATE queue_positions q SET kindergarten_id = c.kg, position = c.pos, changed_at = %(now)s
                FROM changed c WHERE q.application_id = c.id AND c.previous IS NOT NULL
                RETURNING q.application_id
            ), inserted AS (
                INSERT INTO queue_positions (application_id, kindergarten_id, position, changed_at)
                SELECT id, kg, pos, %(now)s FROM changed WHERE previous IS NULL
                RETURNING application_id
            ), saved AS (
                SELECT application_id FROM updated UNION ALL SELECT application_id FROM inserted
            )
            INSERT INTO outbox (event_id, type, subject, payload, created_at)
            SELECT c.event_id, '{POSITION_CHANGED}', 'application:' || c.id,
                   CAST(json_build_object(
                       'specversion', '1.0', 'id', c.event_id, 'source', '/kezek/{outbox.source}',
                       'type', '{POSITION_CHANGED}', 'time', CAST(%(time)s AS text), 'subject', 'application:' || c.id,
                       'datacontenttype', 'application/json',
                       'dataschema', 'https://kezek.example/schemas/{POSITION_CHANGED}.json',
                       'data', jsonb_strip_nulls(jsonb_build_object(
                           'application_id', c.id, 'parent_id', NULLIF(c.parent_id, ''), 'position', c.pos,
                           'kindergarten_id', c.kg, 'kindergarten_name', NULLIF(k.name, '')))
                           || jsonb_build_object('previous_position', c.previous)) AS text),
                   %(now)s
            FROM changed c JOIN saved ON saved.application_id = c.id LEFT JOIN kindergartens k ON k.id = c.kg
            ORDER BY c.kg, c.pos
        """
        with s.connection().connection.driver_connection.cursor() as cur:
            # Not prepared: with the keys as a constant, PostgreSQL hashes the
            # `= ANY` (a generic plan would compare them one by one).
            cur.execute(sql, params, prepare=False)
            return cur.rowcount

    def _publish_positions_generic(self, s: Session, pools: list[tuple[int, str]] | None,
                                   policy: d.Policy) -> int:
        """The same in Python (SQLite): one pass per cohort over its waiting
        children in rank order, counting per kindergarten."""
        by_cohort: dict[int, set[str] | None] = {}
        if pools is None:
            by_cohort = {c: None for (c,) in s.execute(sa.select(A.c.cohort).where(A.c.status == "queued")
                                                          .distinct())}
        else:
            for c, k in pools:
                by_cohort.setdefault(c, set()).add(k)
        fresh: dict[str, tuple[str, int, str | None]] = {}
        ranks = {c.code: c.rank for c in policy.categories}
        for cohort, kgs in by_cohort.items():
            rows = s.execute(sa.select(A.c.id, A.c.birth_date, A.c.category, A.c.queue_date, A.c.language,
                                       A.c.preferences, A.c.parent_id)
                             .where(A.c.status == "queued", A.c.cohort == cohort)).all()
            ranked = sorted(rows, key=lambda r: (ranks.get(r.category, _BIG_RANK), aware(r.queue_date), r.id))
            seen: Counter = Counter()
            for r in ranked:
                for k in r.preferences:
                    seen[k] += 1
                first = r.preferences[0] if r.preferences else None
                if first is not None and (kgs is None or first in kgs):
                    fresh[r.id] = (first, seen[first], r.parent_id)
        if not fresh:
            return 0
        last = {}
        for chunk in _chunks(sorted(fresh), 500):
            last.update({r.application_id: (r.kindergarten_id, r.position)
                         for r in s.execute(sa.select(POS).where(POS.c.application_id.in_(chunk)))})
        names = dict(s.execute(sa.select(KG.c.id, KG.c.name)).all())
        now, n = self.now(), 0
        for app_id in sorted(fresh, key=lambda a: (fresh[a][0], fresh[a][1])):
            kg, pos, parent = fresh[app_id]
            before = last.get(app_id)
            if before == (kg, pos):
                continue
            if before is None:
                s.execute(sa.insert(POS).values(application_id=app_id, kindergarten_id=kg, position=pos,
                                                changed_at=now))
            else:
                s.execute(sa.update(POS).where(POS.c.application_id == app_id)
                          .values(kindergarten_id=kg, position=pos, changed_at=now))
            data = {"application_id": app_id, "position": pos, "previous_position": before[1] if before else None,
                    "kindergarten_id": kg}
            if parent:
                data["parent_id"] = parent
            if names.get(kg):
                data["kindergarten_name"] = names[kg]
            outbox.add(s, POSITION_CHANGED, f"application:{app_id}", data, time=now)
            n += 1
        return n

    def request_daily_allocation(self) -> bool:
        """Once per local day, at 00:00: children turning 2 today become eligible."""
        day = self.today()
        with self._uow() as s:
            self._request_allocation(s, f"new day {day}: birthdays", dedupe_key=f"day:{self.country}:{day}")
            return bool(s.info.get("allocation_requested"))

    def allocate(self, *, lock: bool = True, attempts: int = 8) -> RunResult:
        """One allocation run over every pool with free places. Retried when
        a concurrent change made its reads stale (the database refuses the
        write: a CHECK, the unique live-referral index, a deadlock)."""
        for attempt in range(attempts):
            try:
                with unit_of_work(self.sessions) as s:
                    result = self._allocate(s, lock=lock)
                if len(result.issued) >= _BIG_RUN:
                    self._tidy_preference_index(result)
                return result
            except _RETRYABLE as exc:
                if attempt == attempts - 1:
                    raise
                log.info("allocation.retry", attempt=attempt + 1, reason=type(exc).__name__,
                         error=str(exc).splitlines()[0][:200])
                time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
        raise AssertionError("unreachable")

    def _tidy_preference_index(self, result: RunResult) -> None:
        """A big run leaves its changed rows in the GIN index's pending list,
        which every position query would then scan; merge them now rather
        than wait for autovacuum. Best effort: the run is already committed."""
        t = time.perf_counter()
        try:
            with self.sessions() as s:
                if self._pg(s):
                    s.execute(sa.text("SELECT gin_clean_pending_list('ix_applications_prefs')"))
                    s.commit()
        except Exception as exc:
            log.warning("allocation.index_upkeep_failed", error=repr(exc))
        result.timings["index_upkeep"] = time.perf_counter() - t

    def _ranked(self, s: Session, cohort: int, language: str, bound: date, policy: d.Policy,
                consumed: list, group: dict, allocations: list) -> Iterator[d.Applicant]:
        """Waiting children of one group who are old enough, in rank order,
        streamed from the database; what the allocation reads is recorded."""
        if self._pg(s):
            yield from self._ranked_pg(s, cohort, language, bound, policy, consumed, group, allocations)
            return
        rank = sa.case({c.code: c.rank for c in policy.categories}, value=A.c.category, else_=_BIG_RANK)
        q = (sa.select(A.c.id, A.c.birth_date, A.c.category, A.c.queue_date, A.c.language, A.c.preferences)
             .where(A.c.status == "queued", A.c.cohort == cohort, A.c.language == language,
                    A.c.birth_date <= bound)
             .order_by(rank, A.c.queue_date, A.c.id))
        for rid, birth, cat, qd, lang, prefs in s.execute(q):
            a = d.Applicant(rid, birth, cat, aware(qd), lang, tuple(prefs))
            consumed.append(a)
            yield a

    def _ranked_pg(self, s: Session, cohort: int, language: str, bound: date, policy: d.Policy,
                   consumed: list, group: dict, allocations: list) -> Iterator[d.Applicant]:
        """The PostgreSQL stream: category by category in rank order, each in
        (queue date, id) order straight from ix_applications_rank_order, in
        chunks. Each chunk asks only for children who list a kindergarten
        that still has a place they may take: the others would get nothing
        now and change nothing, so the allocation is the same, and the tail
        of a national queue is never sent to Python."""
        conn = s.connection().connection.driver_connection
        left = Counter(group)
        seen = len(allocations)
        # Walk ix_applications_rank_order (index-only): the planner would
        # rather sort, not knowing how few rows the LIMIT needs.
        # Queue dates in UTC: psycopg then gives them a fixed offset, which
        # Python compares and formats far faster than a named zone.
        with conn.cursor() as cur:
            cur.execute("SET LOCAL enable_sort = off; SET LOCAL enable_bitmapscan = off; "
                        "SET LOCAL enable_seqscan = off; SET LOCAL TimeZone = 'UTC'")
        try:
            yield from self._chunks_pg(conn, cohort, language, bound, policy, consumed, left, seen, allocations)
        finally:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.INERROR:  # else the rollback resets them
                with conn.cursor() as cur:
                    cur.execute("RESET enable_sort; RESET enable_bitmapscan; RESET enable_seqscan; RESET TimeZone")

    def _chunks_pg(self, conn, cohort, language, bound, policy, consumed, left, seen, allocations):
        for cat in sorted(policy.categories, key=lambda c: (c.rank, c.code)):
            after: tuple | None = None
            chunk = 2_000
            while True:
                for x in allocations[seen:]:
                    left[(x.place, x.for_category)] -= 1
                seen = len(allocations)
                wanted = sorted({k.kindergarten for (k, pool_cat), n in left.items()
                                 if n > 0 and pool_cat in (None, cat.code)})
                if not wanted:
                    break
                sql = ("SELECT id, birth_date, category, queue_date, language, preferences FROM applications "
                       "WHERE status = 'queued' AND cohort = %(c)s AND language = %(l)s AND category = %(cat)s "
                       "AND birth_date <= %(b)s AND (" + _LISTS_ANY + ") ")
                params = {"c": cohort, "l": language, "cat": cat.code, "b": bound, "w": "\x1f".join(wanted),
                          "n": chunk}
                if after is not None:
                    sql += "AND (queue_date, id COLLATE \"C\") > (%(qd)s, %(id)s COLLATE \"C\") "
                    params.update(qd=after[0], id=after[1])
                sql += "ORDER BY queue_date, id COLLATE \"C\" LIMIT %(n)s"
                with conn.cursor(binary=True) as cur:
                    # Not prepared: with the list as a constant, PostgreSQL
                    # hashes it (a generic plan would compare one by one).
                    rows = cur.execute(sql, params, prepare=False).fetchall()
                for rid, birth, category, qd, lang, prefs in rows:
                    a = d.Applicant(rid, birth, category, qd, lang, tuple(prefs))
                    consumed.append(a)
                    yield a
                if len(rows) < chunk:
                    break
                after = (rows[-1][3], rows[-1][0])
                chunk = min(chunk * 2, 50_000)

    def _allocate(self, s: Session, *, lock: bool) -> RunResult:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        now = self.now()
        policy, version = self._policy(s)
        cal = kcal.calendar(policy.country)
        on = cal.local_date(now)
        requests = [r[0] for r in s.execute(sa.select(REQ.c.id, REQ.c.reason).where(REQ.c.done_at.is_(None))
                                             .order_by(REQ.c.id).limit(10_000))]
        q = (sa.select(P.c.id, P.c.kindergarten_id, P.c.cohort, P.c.language, P.c.for_category, P.c.free)
             .where(P.c.free > 0).order_by(P.c.id))
        if lock:
            # Concurrent runs queue here, and then see each other's referrals.
            q = q.with_for_update()
        free: dict[tuple[d.PlaceKey, str | None], int] = {}
        pool_id: dict[tuple[d.PlaceKey, str | None], int] = {}
        for pid, kg, cohort, lang, cat, n in s.execute(q):
            key = (d.PlaceKey(kg, cohort, lang), cat or None)
            free[key], pool_id[key] = n, pid
        timings["lock_pools"] = time.perf_counter() - t0
        if not free:
            if requests:
                s.execute(sa.update(REQ).where(REQ.c.id.in_(requests)).values(done_at=now))
            return RunResult(None, timings=timings)

        bound = d.latest_eligible_birth_date(on, policy)
        consumed: list[d.Applicant] = []
        allocations: list[d.Allocation] = []
        for cohort, language in d.groups_of(free):
            group = {k: n for k, n in free.items() if k[0].cohort == cohort and k[0].language == language}
            stream = self._ranked(s, cohort, language, bound, policy, consumed, group, allocations)
            try:
                # One by one: the stream reads `allocations` to know which
                # places are left when it fetches its next chunk.
                for x in d.allocate_ranked(stream, group, on, policy):
                    allocations.append(x)
            finally:
                stream.close()
        timings["allocate"] = time.perf_counter() - t0 - timings["lock_pools"]

        t1 = time.perf_counter()
        run_id = s.execute(sa.insert(RUNS).values(
            started_at=now, on_date=on, trigger=f"{len(requests)} requests"[:200],
            policy={**policy.to_dict(), "version": version},
            free_before=[[k.kindergarten, k.cohort, k.language, cat, n] for (k, cat), n in sorted(
                free.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))],
            candidates=b"", candidates_count=0, allocated=0, digest="").returning(RUNS.c.id)).scalar_one()
        issued: list[Issued] = []
        if allocations:
            deadlines: dict[bool, datetime] = {}
            rows = []
            for x in allocations:
                cat = x.inputs["category"]
                needs = policy.category(cat).needs_confirmation
                if needs not in deadlines:
                    deadlines[needs] = utc(rules.first_deadline(cal, now, needs, policy))
                place, lang = x.place, x.place.language
                rows.append((x.child_id, pool_id[(place, x.for_category)], place.kindergarten, place.cohort, lang,
                             x.for_category or OPEN_POOL, cat, needs, x.preference_index, "live",
                             rules.first_state(needs).value, run_id, now,
                             deadlines[needs]))
            taken = Counter(pool_id[(x.place, x.for_category)] for x in allocations)
            write = self._write_pg if self._pg(s) else self._write_generic
            ref_ids = write(s, now, allocations, rows, taken, timings)
            audit = []
            for seq, (x, rid) in enumerate(zip(allocations, ref_ids)):
                issued.append(Issued(rid, x.child_id, x.place, x.for_category, x.preference_index))
                audit.append((run_id, seq, rid, x.child_id, x.place.kindergarten, x.place.cohort, x.place.language,
                              x.for_category, x.preference_index, x.inputs))
            t = time.perf_counter()
            if self._pg(s):
                with s.connection().connection.driver_connection.cursor() as cur:
                    with cur.copy("COPY allocation_audit (run_id, seq, referral_id, application_id, kindergarten_id, "
                                  "cohort, language, for_category, preference_index, inputs) FROM STDIN") as cp:
                        for row in audit:
                            cp.write_row((*row[:-1], json.dumps(row[-1], separators=(",", ":"))))
            else:
                cols = ("run_id", "seq", "referral_id", "application_id", "kindergarten_id", "cohort", "language",
                        "for_category", "preference_index", "inputs")
                for chunk in _chunks(audit, 5000):
                    s.execute(sa.insert(AUDIT), [dict(zip(cols, row)) for row in chunk])
            timings["write_audit"] = time.perf_counter() - t
            # Everyone behind a referred child in any pool it waited in moves up.
            prefs = {a.child_id: a.preferences for a in consumed}
            self._positions_moved(s, {(x.place.cohort, k) for x in allocations for k in prefs[x.child_id]})
        timings["write"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        # The children the run considered, for replay. Queue dates as UTC
        # microseconds since the epoch: exact, and cheap for a national run.
        blob = zlib.compress(json.dumps(
            [[a.child_id, a.birth_date.toordinal(), a.category, _micros(a.queue_date), a.language, a.preferences]
             for a in consumed], separators=(",", ":")).encode(), 1)
        digest = _digest((x.child_id, str(x.place), x.for_category, x.preference_index) for x in allocations)
        s.execute(sa.update(RUNS).where(RUNS.c.id == run_id).values(
            candidates=blob, candidates_count=len(consumed), allocated=len(allocations), digest=digest,
            finished_at=self.now()))
        if requests:
            s.execute(sa.update(REQ).where(REQ.c.id.in_(requests)).values(done_at=now, run_id=run_id))
        self._audit(s, ALLOCATOR, "allocation.run", f"run:{run_id}", {
            "allocated": len(allocations), "candidates": len(consumed), "requests": len(requests),
            "on": on.isoformat()})
        timings["record"] = time.perf_counter() - t2
        timings["total"] = time.perf_counter() - t0
        log.info("allocation.done", run_id=run_id, allocated=len(allocations), candidates=len(consumed),
                 seconds=round(timings["total"], 3))
        return RunResult(run_id, issued, len(consumed), timings)

    @staticmethod
    def _check_all_referred(ids: list[str], changed: int) -> None:
        if changed != len(ids):
            raise _StaleRead(f"{len(ids) - changed} children changed during the run")

    def _write_generic(self, s: Session, now: datetime, allocations: list, rows: list[tuple],
                       taken: Counter, timings: dict) -> list[int]:
        ids = [x.child_id for x in allocations]
        changed = 0
        for chunk in _chunks(ids, 500):
            changed += s.execute(sa.update(A).where(A.c.id.in_(chunk), A.c.status == "queued")
                                 .values(status="referred", updated_at=now)).rowcount
        self._check_all_referred(ids, changed)
        s.execute(sa.update(P).where(P.c.id == sa.bindparam("pid"))
                  .values(free=P.c.free - sa.bindparam("n"), held=P.c.held + sa.bindparam("n")),
                  [{"pid": pid, "n": n} for pid, n in taken.items()])
        return list(s.execute(sa.insert(R).returning(R.c.id, sort_by_parameter_order=True),
                              [dict(zip(_REFERRAL_COLUMNS, row)) for row in rows]).scalars())

    def _write_pg(self, s: Session, now: datetime, allocations: list, rows: list[tuple],
                  taken: Counter, timings: dict) -> list[int]:
        """The same writes as set operations and COPY: a national run issues
        tens of thousands of referrals in one transaction."""
        ids = [x.child_id for x in allocations]
        conn = s.connection().connection.driver_connection
        with conn.cursor() as cur:
            # Only children still waiting: a child referred or removed by a
            # concurrent change since we read it makes the run retry.
            t = time.perf_counter()
            cur.execute("UPDATE applications SET status = 'referred', updated_at = %s "
                        "WHERE id = ANY(%s) AND status = 'queued'", (now, ids))
            self._check_all_referred(ids, cur.rowcount)
            timings["write_applications"] = time.perf_counter() - t
            pids, ns = zip(*sorted(taken.items()))
            # The CHECK (free >= 0) refuses more referrals than free places.
            cur.execute("UPDATE places AS p SET free = p.free - v.n, held = p.held + v.n "
                        "FROM unnest(%s::bigint[], %s::int[]) AS v(id, n) WHERE p.id = v.id", (list(pids), list(ns)))
            cur.execute("SELECT nextval(pg_get_serial_sequence('referrals', 'id')) FROM generate_series(1, %s)",
                        (len(rows),))
            ref_ids = [r[0] for r in cur.fetchall()]
            # The partial unique index refuses a second live referral of a child.
            t = time.perf_counter()
            with cur.copy(f"COPY referrals (id, {', '.join(_REFERRAL_COLUMNS)}) FROM STDIN") as cp:
                for rid, row in zip(ref_ids, rows):
                    cp.write_row((rid, *row))
            timings["write_referrals"] = time.perf_counter() - t
        return ref_ids

    # -------------------------------------------------------------- import

    def import_referral(self, *, referral_id: str, application_id: str, kindergarten: str, cohort: int,
                        language: str, category: str, for_category: str | None, state: str, issued_at: datetime,
                        deadline: datetime, needs_confirmation: bool, actor: str, extended: bool = False,
                        confirmed_at: datetime | None = None) -> bool:
        """A live referral moved from a previous system (the Balalyk
        migration); see `import_referrals_many`. False if it was imported
        before."""
        [got] = self.import_referrals_many([ImportReferral(
            referral_id=referral_id, application_id=application_id, kindergarten=kindergarten, cohort=cohort,
            language=language, category=category, for_category=for_category, state=state, issued_at=issued_at,
            deadline=deadline, needs_confirmation=needs_confirmation, extended=extended,
            confirmed_at=confirmed_at)], actor=actor)
        if isinstance(got, Refused):
            raise got
        return got

    def import_referrals_many(self, items: list[ImportReferral], *, actor: str) -> list[bool | Refused]:
        """Live referrals moved from a previous system (the Balalyk
        migration), in one transaction: each held place joins the register
        as held, each entry becomes referred, and the workflow starter
        resumes each workflow in its recorded state, to its recorded deadline
        (ReferralInput.resume). Per item, in order: True if imported now,
        False if it was imported before, or the refusal (the others go on)."""
        for attempt in range(3):
            try:
                with self._uow() as s:
                    return self._import_referrals(s, items, actor=actor)
            except IntegrityError:
                # A referral or a pool was written meanwhile by another way:
                # nothing of this batch was; checked again, it is seen.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _referral_refusal(it: ImportReferral) -> Refused | None:
        if it.state not in rules.LIVE_STATES:
            return Refused(f"only live referrals are imported, not {it.state!r}", field="state", status_code=422)
        if not it.needs_confirmation and (it.state == "awaiting_confirmation" or it.extended):
            return Refused("only a referral whose privilege must be confirmed has a confirmation window to wait "
                           "in or to have extended", field="needs_confirmation", status_code=422)
        if utc(it.deadline) <= utc(it.issued_at):
            return Refused(f"deadline {it.deadline.isoformat()} is not after issued_at {it.issued_at.isoformat()}",
                           field="deadline", status_code=422)
        return None

    def _import_referrals(self, s: Session, items: list[ImportReferral], *, actor: str) -> list[bool | Refused]:
        out: list[bool | Refused | None] = [None] * len(items)
        now = self.now()
        policy, version = self._policy(s)
        this_year = self.today(policy).year
        known = set()
        for part in _chunks([it.referral_id for it in items], 5000):
            known.update(s.scalars(sa.select(R.c.external_id).where(R.c.external_id.in_(part))))
        apps = {}
        for part in _chunks(sorted({it.application_id for it in items}), 5000):
            apps.update((r.id, r) for r in s.execute(
                sa.select(A.c.id, A.c.status, A.c.cohort, A.c.language, A.c.preferences, A.c.pin, A.c.surname,
                          A.c.name, A.c.patronymic, A.c.birth_date, A.c.parent_id, A.c.queue_date)
                .where(A.c.id.in_(part)).order_by(A.c.id).with_for_update()))
        kgs = {k.id: k for k in s.scalars(sa.select(Kindergarten).where(
            Kindergarten.id.in_({it.kindergarten for it in items})))}
        status = {app_id: r.status for app_id, r in apps.items()}
        accepted: list[tuple[int, ImportReferral]] = []
        for i, it in enumerate(items):
            app = apps.get(it.application_id)
            kg = kgs.get(it.kindergarten)
            if it.referral_id in known:
                out[i] = False
                continue
            refusal = self._referral_refusal(it)
            if refusal is not None:
                out[i] = refusal
            elif app is None:
                out[i] = NotFound(f"no queue entry {it.application_id!r}", field="application_id")
            elif status[app.id] != "queued":
                out[i] = Refused(f"the entry is {status[app.id]}; a referral cannot be imported for it",
                                 field="application_id")
            elif (it.cohort, it.language) != (app.cohort, app.language):
                out[i] = Refused(f"the place {it.kindergarten}/{it.cohort}/{it.language} is not of the child's "
                                 f"cohort and language ({app.cohort}/{app.language})", field="cohort", status_code=422)
            elif kg is None:
                out[i] = NotFound(f"no kindergarten {it.kindergarten!r}", field="kindergarten")
            elif kg.languages and it.language not in kg.languages:
                out[i] = Refused(f"kindergarten {it.kindergarten!r} does not teach in {it.language!r}",
                                 field="language", status_code=422)
            elif not (this_year - 8 <= it.cohort <= this_year):
                out[i] = Refused(f"cohort {it.cohort} is not a birth year of preschool children", field="cohort",
                                 status_code=422)
            elif it.for_category is not None and it.for_category not in policy.codes():
                out[i] = Refused(f"unknown category {it.for_category!r}", field="for_category", status_code=422)
            else:
                known.add(it.referral_id)
                status[app.id] = "referred"
                accepted.append((i, it))
                out[i] = True
        if not accepted:
            return out  # type: ignore[return-value]
        pools: dict[tuple, PlacePool] = {}
        for key in sorted({(it.kindergarten, it.cohort, it.language, it.for_category or OPEN_POOL)
                           for _, it in accepted}):
            pools[key] = self._pool(s, key[0], key[1], key[2], key[3] or None, create=True)
        held = Counter((it.kindergarten, it.cohort, it.language, it.for_category or OPEN_POOL) for _, it in accepted)
        for key, n in held.items():
            pools[key].held += n
        s.execute(sa.insert(Publication.__table__), [
            dict(kindergarten_id=it.kindergarten, cohort=it.cohort, language=it.language,
                 for_category=it.for_category or OPEN_POOL, count=1, publish_at=now, published_at=now, actor=actor,
                 created_at=now) for _, it in accepted])
        # One "run" per importer and day holds the imported referrals: they
        # were allocated elsewhere, so it records no inputs to recompute.
        trigger = f"import by {actor}"[:200]
        run_id = s.execute(sa.select(RUNS.c.id).where(RUNS.c.trigger == trigger, RUNS.c.on_date == now.date())
                           ).scalar()
        if run_id is None:
            run_id = s.execute(sa.insert(RUNS).values(
                started_at=now, finished_at=now, on_date=now.date(), trigger=trigger,
                policy={**policy.to_dict(), "version": version}, free_before=[], candidates=zlib.compress(b"[]"),
                candidates_count=0, allocated=0, digest=_digest([])).returning(RUNS.c.id)).scalar_one()
        s.flush()
        rows = []
        for _, it in accepted:
            key = (it.kindergarten, it.cohort, it.language, it.for_category or OPEN_POOL)
            prefs = list(apps[it.application_id].preferences)
            rows.append(dict(
                application_id=it.application_id, place_id=pools[key].id, kindergarten_id=it.kindergarten,
                cohort=it.cohort, language=it.language, for_category=it.for_category or OPEN_POOL,
                category=it.category, needs_confirmation=it.needs_confirmation,
                preference_index=prefs.index(it.kindergarten) if it.kindergarten in prefs else -1,
                status="live", state=it.state, run_id=run_id, issued_at=utc(it.issued_at),
                deadline=utc(it.deadline), external_id=it.referral_id, extended=it.extended,
                confirmed_at=utc(it.confirmed_at) if it.confirmed_at else None))
        ids = dict((ext, rid) for rid, ext in s.execute(sa.insert(R).returning(R.c.id, R.c.external_id), rows))
        s.execute(sa.update(A).where(A.c.id.in_([it.application_id for _, it in accepted]))
                  .values(status="referred", updated_at=now))
        # They leave the waiting: those behind them move up.
        self._positions_moved(s, {(apps[it.application_id].cohort, k) for _, it in accepted
                                  for k in apps[it.application_id].preferences})
        s.execute(sa.insert(AuditEntry.__table__), [
            dict(at=now, actor=actor, action="referral.imported", subject=f"application:{it.application_id}",
                 details={"referral_id": ids[it.referral_id], "external_id": it.referral_id,
                          "kindergarten": it.kindergarten, "state": it.state,
                          "deadline": utc(it.deadline).isoformat(), "extended": it.extended,
                          "confirmed_at": utc(it.confirmed_at).isoformat() if it.confirmed_at else None})
            for _, it in accepted])
        s.execute(sa.insert(outbox.table), [
            self._imported_event(ids[it.referral_id], it, apps[it.application_id], kgs[it.kindergarten], now)
            for _, it in accepted])
        return out  # type: ignore[return-value]

    @staticmethod
    def _imported_event(rid: int, it: ImportReferral, app: Any, kg: Kindergarten, now: datetime) -> dict:
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
        event = new_event("referral.imported.v1", f"referral:{rid}", data, source=outbox.source, time=now)
        return {"event_id": event.id, "type": event.type, "subject": event.subject, "payload": event.to_json(),
                "created_at": now}

    resume_imported_referral = import_referral

    # ------------------------------------------------------------- replay

    def replay(self, run_ids: Iterable[int] | None = None) -> list[dict]:
        """Recomputes every recorded run from its recorded inputs (policy,
        free places, the children it considered) and compares with the
        allocations it made. Returns one report per run."""
        out = []
        with self.sessions() as s:
            q = sa.select(RUNS.c.id).order_by(RUNS.c.id)
            if run_ids is not None:
                q = q.where(RUNS.c.id.in_(list(run_ids)))
            for (rid,) in s.execute(q).all():
                out.append(self._replay_run(s, rid))
        return out

    def _replay_run(self, s: Session, run_id: int) -> dict:
        run = s.execute(sa.select(RUNS).where(RUNS.c.id == run_id)).mappings().one()
        pol = dict(run["policy"])
        pol.pop("version", None)
        policy = d.Policy.from_dict(pol)
        free = {(d.PlaceKey(kg, cohort, lang), cat): n for kg, cohort, lang, cat, n in run["free_before"]}
        waiting = [d.Applicant(cid, date.fromordinal(b), cat, _EPOCH + timedelta(microseconds=q), lang, tuple(p))
                   for cid, b, cat, q, lang, p in json.loads(zlib.decompress(run["candidates"]))]
        recorded = [d.Allocation(r.application_id, d.PlaceKey(r.kindergarten_id, r.cohort, r.language),
                                 r.for_category, r.preference_index, {})
                    for r in s.execute(sa.select(AUDIT).where(AUDIT.c.run_id == run_id).order_by(AUDIT.c.seq))]
        problems = d.replay(recorded, waiting, free, run["on_date"], policy)
        digest = _digest((x.child_id, str(x.place), x.for_category, x.preference_index) for x in recorded)
        if digest != run["digest"]:
            problems.append("the audit rows do not match the digest recorded with the run")
        return {"run_id": run_id, "on": run["on_date"].isoformat(), "allocations": len(recorded),
                "candidates": run["candidates_count"], "matches": not problems, "problems": problems[:20]}

    # -------------------------------------------------- workflows to start

    def unstarted_referrals(self, limit: int = 100) -> list[dict]:
        """Referrals whose workflow has not been started yet (after a crash
        too): the starter starts them; the workflow id makes it idempotent."""
        with self.sessions() as s:
            policy, _ = self._policy(s)
            q = (sa.select(R, A.c.parent_id).join(A, A.c.id == R.c.application_id)
                 .where(R.c.workflow_started_at.is_(None)).order_by(R.c.id).limit(limit))
            out = []
            for r in s.execute(q).mappings():
                out.append({
                    "referral_id": str(r["id"]), "application_id": r["application_id"],
                    "kindergarten": r["kindergarten_id"], "cohort": r["cohort"], "language": r["language"],
                    "category": r["category"], "for_category": r["for_category"] or None,
                    "needs_confirmation": r["needs_confirmation"],
                    "issued_at": aware(r["issued_at"]),
                    # An imported referral continues where the previous system left it.
                    "resume": None if r["external_id"] is None else {
                        "state": r["state"], "deadline": aware(r["deadline"]), "extended": r["extended"],
                        "confirmed_at": aware(r["confirmed_at"])},
                    "country": policy.country, "parent_id": r["parent_id"],
                    "policy": {k: getattr(policy, k) for k in ("confirm_working_days", "enrol_working_days",
                                                               "certificate_valid_days", "extension_days",
                                                               "stoplist_days")},
                })
            return out

    def mark_workflow_started(self, referral_id: int | str) -> None:
        with unit_of_work(self.sessions) as s:
            s.execute(sa.update(R).where(R.c.id == int(referral_id), R.c.workflow_started_at.is_(None))
                      .values(workflow_started_at=self.now()))

    # --------------------------------------- referral changes (activities)

    def _claim(self, s: Session, key: str) -> bool:
        return outbox.claim(s, ACTIVITY_CONSUMER, _activity_claim_id(key))

    def _referral(self, s: Session, referral_id: str | int, app_id: str | None = None) -> Referral:
        try:
            rid = int(referral_id)
        except (TypeError, ValueError):
            raise NotFound(f"no referral {referral_id!r}", field="referral_id") from None
        ref = s.scalars(sa.select(Referral).where(Referral.id == rid).with_for_update()).one_or_none()
        if ref is None or (app_id is not None and ref.application_id != app_id):
            raise NotFound(f"no referral {referral_id!r} for application {app_id!r}", field="referral_id")
        return ref

    def _ref_event_data(self, s: Session, ref: Referral, app: Application, **extra) -> dict:
        kg = s.get(Kindergarten, ref.kindergarten_id)
        data = {"referral_id": str(ref.id), "application_id": ref.application_id,
                "kindergarten_id": ref.kindergarten_id}
        if app.parent_id:
            data["parent_id"] = app.parent_id
        if kg is not None:
            data["kindergarten_name"] = kg.name
            if kg.address:
                data["kindergarten_address"] = kg.address
        data.update({k: v for k, v in extra.items() if v is not None})
        return data

    def return_place(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                     outcome: str, drop_preference: bool = False, reason: str | None = None,
                     actor: str = "system") -> bool:
        """The referral ends and its place goes back to the pool it came
        from. The child's entry changes in the same transaction, so no
        allocation can see it half-way: cancelled -> waiting (without that
        kindergarten if asked), expired -> on the stop-list, privilege
        rejected -> waiting in the general queue."""
        if outcome not in rules.STATE_AFTER_RETURN:
            raise Refused(f"unknown outcome {outcome!r}", field="outcome", status_code=422)
        at = utc(at)
        with self._uow() as s:
            if not self._claim(s, key):
                return False
            ref = self._referral(s, referral_id, application_id)
            if ref.status != "live":
                raise Refused(f"referral {referral_id} is {ref.status} ({ref.outcome or ref.state}); "
                              f"its place cannot be returned", field="referral_id")
            policy, _ = self._policy(s)
            ref.status, ref.outcome, ref.ended_at = "ended", outcome, at
            ref.state = rules.STATE_AFTER_RETURN[outcome].value
            s.flush()
            # The pool before the child, in the allocation's order: no deadlock.
            s.execute(sa.update(P).where(P.c.id == ref.place_id).values(free=P.c.free + 1, held=P.c.held - 1))
            app = self._app(s, ref.application_id)
            now = self.now()
            self._entry_moved(s, app.cohort, app.preferences)  # back among the waiting (or paused)
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
                self._to_general(s, app, actor=actor, reason=reason, at=at)
            app.updated_at = now
            place = f"place:{ref.kindergarten_id}/{ref.cohort}/{ref.language}"
            outbox.add(s, f"referral.{outcome}.v1", f"referral:{ref.id}",
                       self._ref_event_data(s, ref, app, reason=None if outcome == "expired" else reason,
                                            stoplist_until=app.paused_until.isoformat()
                                            if outcome == "expired" else None), time=at)
            outbox.add(s, "place.returned.v1", place, {
                "kindergarten_id": ref.kindergarten_id, "cohort": ref.cohort, "language": ref.language,
                "for_category": ref.for_category or None, "referral_id": str(ref.id), "reason": outcome},
                time=at)
            self._audit(s, actor, f"referral.{outcome}", f"application:{app.id}",
                        {"referral_id": ref.id, "kindergarten": ref.kindergarten_id, "reason": reason,
                         "drop_preference": drop_preference}, at=at)
            self._audit(s, actor, "place.returned", place, {"referral_id": ref.id, "reason": outcome}, at=at)
            self._request_allocation(s, f"place returned by referral {ref.id}")
            return True

    def return_to_general_queue(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                                from_category: str, reason: str | None = None, actor: str = "system") -> bool:
        with self._uow() as s:
            if not self._claim(s, key):
                return False
            app = self._app(s, application_id)
            # Usually already done by return_place in the same act; then a no-op.
            self._to_general(s, app, actor=actor, reason=reason, at=utc(at))
            return True

    def put_on_stoplist(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                        until: datetime, actor: str = "system") -> bool:
        with self._uow() as s:
            if not self._claim(s, key):
                return False
            app = self._app(s, application_id)
            if app.status not in ("paused", "queued"):
                raise Refused(f"the entry is {app.status}; it cannot go on the stop-list", field="application_id")
            app.status, app.paused_until, app.updated_at = "paused", utc(until), self.now()
            outbox.add(s, "application.paused.v1", f"application:{app.id}", {
                "application_id": app.id, "parent_id": app.parent_id, "referral_id": str(referral_id),
                "until": utc(until).isoformat()}, time=utc(at))
            self._audit(s, actor, "application.paused", f"application:{app.id}",
                        {"until": utc(until).isoformat(), "referral_id": referral_id}, at=utc(at))
            return True

    def lift_stoplist(self, *, key: str, referral_id: str | None, application_id: str, at: datetime,
                      actor: str = "system") -> bool:
        with self._uow() as s:
            if not self._claim(s, key):
                return False
            app = self._app(s, application_id)
            self._resume(s, app, actor=actor, at=utc(at))
            return True

    def _resume(self, s: Session, app: Application, *, actor: str, at: datetime) -> bool:
        if app.status != "paused":
            return False  # already lifted (by the other of the two paths)
        app.status, app.paused_until, app.updated_at = "queued", None, self.now()
        outbox.add(s, "application.resumed.v1", f"application:{app.id}",
                   {"application_id": app.id, **({"parent_id": app.parent_id} if app.parent_id else {})},
                   time=at)
        self._audit(s, actor, "application.resumed", f"application:{app.id}", {}, at=at)
        self._request_allocation(s, f"stop-list of {app.id} ended")
        self._entry_moved(s, app.cohort, app.preferences)
        return True

    def lift_due_stoplists(self) -> int:
        """Stop-lists whose end has passed (the background loop; the
        workflow lifts them too, whichever comes first)."""
        now = self.now()
        with self._uow() as s:
            q = (sa.select(Application).where(Application.status == "paused", Application.paused_until <= now)
                 .order_by(Application.paused_until).limit(500).with_for_update(skip_locked=True))
            apps = list(s.scalars(q))
            for app in apps:
                self._resume(s, app, actor="system:stoplist", at=aware(app.paused_until))
            return len(apps)

    def record_enrolment(self, *, key: str, referral_id: str, application_id: str, at: datetime,
                         actor: str = "system") -> bool:
        at = utc(at)
        with self._uow() as s:
            if not self._claim(s, key):
                return False
            ref = self._referral(s, referral_id, application_id)
            if ref.status != "live":
                raise Refused(f"referral {referral_id} is {ref.status}; enrolment refused", field="referral_id")
            ref.status, ref.state, ref.outcome, ref.ended_at = "enrolled", "enrolled", "enrolled", at
            s.flush()
            s.execute(sa.update(P).where(P.c.id == ref.place_id)
                      .values(held=P.c.held - 1, enrolled=P.c.enrolled + 1))
            app = self._app(s, ref.application_id)
            app.status, app.updated_at = "enrolled", self.now()
            outbox.add(s, "referral.enrolled.v1", f"referral:{ref.id}", self._ref_event_data(s, ref, app), time=at)
            self._audit(s, actor, "referral.enrolled", f"application:{app.id}",
                        {"referral_id": ref.id, "kindergarten": ref.kindergarten_id}, at=at)
            return True

    def record_referral(self, *, key: str, referral_id: str, application_id: str, at: datetime, event: str,
                        state: str, deadline: datetime | None = None, needs_confirmation: bool | None = None,
                        reason: str | None = None, actor: str = "system") -> bool:
        """A change the workflow made that leaves the register untouched
        (issued, privilege confirmed, certificate requested, extended): keep
        the referral's state and deadline, publish the fact."""
        at = utc(at)
        with self._uow() as s:
            if not self._claim(s, key):
                return False
            ref = self._referral(s, referral_id, application_id)
            app = self._app(s, ref.application_id, lock=False)
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
                extra.update(needs_confirmation=ref.needs_confirmation if needs_confirmation is None
                             else needs_confirmation, category=ref.category, cohort=ref.cohort,
                             language=ref.language)
            elif event == "referral.certificate_requested":
                extra["reason"] = reason
            outbox.add(s, f"{event}.v1", f"referral:{ref.id}", self._ref_event_data(s, ref, app, **extra), time=at)
            self._audit(s, actor, event, f"application:{app.id}",
                        {"referral_id": ref.id, "state": state, "deadline": extra["deadline"], "reason": reason},
                        at=at)
            return True

    # ------------------------------------------------------------ reading

    def _competitors(self, s: Session, kgs: list[str], cohort: int, language: str | None = None):
        """Waiting children of a cohort who list any of the kindergartens."""
        if self._pg(s):
            lists = A.c.preferences.op("&&")(sa.cast(sa.literal(list(kgs), postgresql.ARRAY(sa.String(100))),
                                                     postgresql.ARRAY(sa.String(100))))
        else:
            lists = sa.text("EXISTS (SELECT 1 FROM json_each(applications.preferences) AS je "
                            "WHERE je.value IN (SELECT value FROM json_each(:kg_prefs)))"
                            ).bindparams(kg_prefs=json.dumps(list(kgs)))
        q = sa.select(A.c.id, A.c.birth_date, A.c.category, A.c.queue_date, A.c.language, A.c.preferences,
                      A.c.surname, A.c.name, A.c.patronymic).where(A.c.status == "queued", A.c.cohort == cohort, lists)
        if language is not None:
            q = q.where(A.c.language == language)
        return s.execute(q).all()

    @staticmethod
    def _applicant(r) -> d.Applicant:
        return d.Applicant(r.id, r.birth_date, r.category, aware(r.queue_date), r.language, tuple(r.preferences))

    def positions(self, app_id: str) -> list[d.PositionExplanation]:
        """The child's position for each of its preferences, with why."""
        with self.sessions() as s:
            policy, _ = self._policy(s)
            row = s.execute(sa.select(A.c.id, A.c.birth_date, A.c.category, A.c.queue_date, A.c.language,
                                      A.c.preferences, A.c.status).where(A.c.id == app_id)).first()
            if row is None:
                raise NotFound(f"no queue entry {app_id!r}", field="application_id")
            if row.status != "queued" or not row.preferences:
                return []
            me = self._applicant(row)
            # One query for all the preferences; the rule sorts them out.
            waiting = [me] + [self._applicant(r) for r in self._competitors(s, list(me.preferences), me.cohort)
                              if r.id != app_id]
            return [d.explain_position(app_id, waiting, policy, kg) for kg in me.preferences]

    def public_queue(self, kg: str, cohort: int, language: str, *, limit: int = 100, offset: int = 0) -> dict:
        """The anonymised queue of one kindergarten, cohort and language:
        masked names, queue date and category, in rank order."""
        with self.sessions() as s:
            policy, _ = self._policy(s)
            if s.get(Kindergarten, kg) is None:
                raise NotFound(f"no kindergarten {kg!r}", field="kindergarten")
            rows = self._competitors(s, [kg], cohort, language)
            ranked = sorted(rows, key=lambda r: d.rank_key(self._applicant(r), policy))
            on = self.today(policy)
            entries = [{
                "number": offset + i + 1,
                "child": d.mask_name(r.surname, r.name, r.patronymic),
                "queue_date": aware(r.queue_date),
                "category": r.category,
                "preference": list(r.preferences).index(kg) + 1,
                "eligible_today": d.reached_min_age(r.birth_date, on, policy),
            } for i, r in enumerate(ranked[offset:offset + limit])]
            pools = self._pool_views(s, kg, cohort, language)
            return {"kindergarten": kg, "cohort": cohort, "language": language, "total": len(ranked),
                    "places": pools, "entries": entries}

    def _pool_views(self, s: Session, kg: str, cohort: int, language: str) -> list[dict]:
        return [{"for_category": r.for_category or None, "free": r.free, "held": r.held, "enrolled": r.enrolled}
                for r in s.execute(sa.select(P).where(P.c.kindergarten_id == kg, P.c.cohort == cohort,
                                                      P.c.language == language))]

    def audit_trail(self, subject: str | None = None, *, limit: int = 200, after_id: int = 0) -> list[dict]:
        with self.sessions() as s:
            q = sa.select(AuditEntry).where(AuditEntry.id > after_id).order_by(AuditEntry.id).limit(limit)
            if subject:
                q = q.where(AuditEntry.subject == subject)
            return [{"id": e.id, "at": aware(e.at), "actor": e.actor, "action": e.action, "subject": e.subject,
                     "details": e.details} for e in s.scalars(q)]

    def allocation_records(self, app_id: str) -> list[dict]:
        """Each referral the child got, with the inputs that decided it."""
        with self.sessions() as s:
            q = sa.select(AUDIT).where(AUDIT.c.application_id == app_id).order_by(AUDIT.c.run_id)
            return [{"run_id": r.run_id, "referral_id": r.referral_id, "kindergarten": r.kindergarten_id,
                     "cohort": r.cohort, "language": r.language, "for_category": r.for_category,
                     "preference_index": r.preference_index, "inputs": r.inputs} for r in s.execute(q)]

    def runs(self, limit: int = 50) -> list[dict]:
        with self.sessions() as s:
            q = (sa.select(RUNS.c.id, RUNS.c.started_at, RUNS.c.finished_at, RUNS.c.on_date, RUNS.c.trigger,
                           RUNS.c.candidates_count, RUNS.c.allocated, RUNS.c.digest)
                 .order_by(RUNS.c.id.desc()).limit(limit))
            return [{"run_id": r.id, "started_at": aware(r.started_at), "finished_at": aware(r.finished_at),
                     "on": r.on_date, "trigger": r.trigger, "candidates": r.candidates_count,
                     "allocated": r.allocated, "digest": r.digest} for r in s.execute(q)]

    def check_register(self) -> list[str]:
        """The section 6 invariants, checked against the stored state."""
        problems = []
        with self.sessions() as s:
            live = dict(s.execute(sa.select(R.c.place_id, sa.func.count()).where(R.c.status == "live")
                                  .group_by(R.c.place_id)).all())
            enrolled = dict(s.execute(sa.select(R.c.place_id, sa.func.count()).where(R.c.status == "enrolled")
                                      .group_by(R.c.place_id)).all())
            for r in s.execute(sa.select(P)):
                if r.held != live.get(r.id, 0):
                    problems.append(f"pool {r.id}: held {r.held} but {live.get(r.id, 0)} live referrals")
                if r.enrolled != enrolled.get(r.id, 0):
                    problems.append(f"pool {r.id}: enrolled {r.enrolled} but {enrolled.get(r.id, 0)} enrolments")
            twice = s.execute(sa.select(R.c.application_id).where(R.c.status == "live")
                              .group_by(R.c.application_id).having(sa.func.count() > 1)).all()
            problems += [f"child {a} holds {2}+ live referrals" for (a,) in twice]
            mismatch = s.execute(sa.select(A.c.id).join(R, sa.and_(R.c.application_id == A.c.id,
                                                                      R.c.status == "live"))
                                 .where(A.c.status != "referred")).all()
            problems += [f"child {a} holds a live referral but is not referred" for (a,) in mismatch]
        return problems


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(t: datetime) -> int:
    delta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _digest(signatures: Iterable[tuple]) -> str:
    """sha256 of the allocations of a run, whatever their order."""
    lines = sorted(f"{a}\t{b}\t{c}\t{e}" for a, b, c, e in signatures)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _kg_view(k: Kindergarten) -> dict:
    return {"id": k.id, "name": k.name, "district": k.district, "address": k.address, "lat": k.lat,
            "lon": k.lon, "languages": list(k.languages or [])}


def _app_view(a: Application) -> dict:
    return {"id": a.id, "status": a.status, "category": a.category, "claimed_category": a.claimed_category,
            "queue_date": aware(a.queue_date), "cohort": a.cohort, "birth_date": a.birth_date,
            "language": a.language, "preferences": list(a.preferences), "paused_until": aware(a.paused_until),
            "parent_id": a.parent_id, "child": d.mask_name(a.surname, a.name, a.patronymic)}


def _ref_view(r) -> dict:
    return {"id": r["id"], "kindergarten": r["kindergarten_id"], "cohort": r["cohort"], "language": r["language"],
            "status": r["status"], "state": r["state"], "issued_at": aware(r["issued_at"]),
            "deadline": aware(r["deadline"]), "needs_confirmation": r["needs_confirmation"]}
