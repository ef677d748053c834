"""Retention as policy (DOMAIN.md section 7): children's and parents'
personal data is kept only as long as the application needs it and the law
requires, then anonymised in place.

How long, per outcome (the way the application closed, application.closed.v1):

| outcome  | kept after closing | why |
| --- | --- | --- |
| refused  | 1 year  | never queued (a second registration of a queued child): long enough for the family to contest the refusal |
| removed  | 3 years | the general limitation period of the civil codes of Kyrgyzstan and Kazakhstan (3 years): a family may claim it was passed over, and the record that decided it must be there |
| aged_out | 3 years | likewise: the child waited and never got a place |
| left     | 3 years | likewise, counted from leaving the kindergarten |
| enrolled | 5 years | counted from the enrolment: the longest stay (from 2 years of age to school age) plus the limitation period is covered by `left` when the kindergarten records the leaving; this bounds the record of a child whose leaving nobody recorded |

`KEZEK_RETENTION_DAYS` ('{"removed": 730}') changes a period; an outcome
not named keeps its default, and one the policy does not know is kept for
the longest period (the safe side).

Each service keeps its own clock (`retention_clock`, one row per
application it holds data of) from the one fact every service consumes,
`application.closed.v1` (the queue writes its own row with the fact), and
decides about its own data: its daily `RetentionJob` anonymises what is due
with the service's `Anonymiser`, records `retention.anonymised` in its audit
trail and rewrites the personal details of that application's earlier audit
rows through the trail's explicit rewrite path (`AuditTrail.rewrite`). Rows
stay (counts, statistics, the allocation record, which holds pseudonyms
only); names, PINs, documents, addresses, contacts, texts and scans go.
A family's erasure request goes the same way, with the moment set to now
(`RetentionJob.erase`): the queue decides whether the law allows it and
says so in `application.erasure_granted.v1`, which every service consumes.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from kezek.audit import AuditTrail
from kezek.db import aware, utc
from kezek.logging import get_logger
from kezek.trust import SERVICE, Principal

log = get_logger(__name__)

OUTCOMES = ("refused", "removed", "aged_out", "left", "enrolled")
DEFAULT_DAYS: Mapping[str, int] = {"refused": 365, "removed": 1095, "aged_out": 1095, "left": 1095,
                                   "enrolled": 1826}
CLOSED = "application.closed.v1"
ERASURE_GRANTED = "application.erasure_granted.v1"
TABLE = "retention_clock"
# What replaces a name or a free text; a PIN becomes `anonymous_pin(...)`.
ANONYMISED = "anonymised"


class RetentionPolicyError(ValueError):
    pass


@dataclass(frozen=True)
class RetentionPolicy:
    days: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_DAYS))

    def period(self, outcome: str) -> timedelta:
        return timedelta(days=self.days.get(outcome, max(self.days.values())))

    def due_at(self, outcome: str, closed_at: datetime) -> datetime:
        return closed_at + self.period(outcome)

    @classmethod
    def from_setting(cls, raw: str | None) -> "RetentionPolicy":
        """`KEZEK_RETENTION_DAYS`: a JSON object of outcome -> whole days (0 to 36,500)."""
        days = dict(DEFAULT_DAYS)
        if raw and raw.strip():
            try:
                given = json.loads(raw)
            except ValueError:
                raise RetentionPolicyError("retention_days: not a JSON object") from None
            if not isinstance(given, dict):
                raise RetentionPolicyError("retention_days: not a JSON object")
            for outcome, n in given.items():
                if outcome not in OUTCOMES:
                    raise RetentionPolicyError(f"retention_days: unknown outcome {outcome!r}; known: "
                                               f"{', '.join(OUTCOMES)}")
                if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 36_500:
                    raise RetentionPolicyError(f"retention_days.{outcome}: whole days from 0 to 36500")
                days[outcome] = n
        return cls(days)


def anonymous_pin(application_id: str, length: int = 14) -> str:
    """What takes a PIN's place: the same for one application, never digits
    only (no real PIN looks like it), derived from nothing personal."""
    return ("X" + hashlib.sha256(f"kezek-anonymised:{application_id}".encode()).hexdigest())[:length]


def coarse_birth_date(birth: date | None) -> date | None:
    """The birth year only (the cohort, which places and figures need)."""
    return birth.replace(month=1, day=1) if birth else None


# Audit details keep what says what happened (ids, codes, states, moments,
# counts); any other text is the family's and is rewritten.
KEPT_DETAILS = frozenset({
    "referral_id", "kindergarten", "kindergarten_id", "state", "deadline", "outcome", "code", "category",
    "from_category", "claimed_category", "status", "from_status", "kind", "channel", "release_at", "queue_date",
    "preferences", "from", "to", "school_age_years", "cohort", "language", "field", "run_id", "decision",
    "result_event", "refusal_code", "until", "closed_at", "due_at", "tables", "message_id", "attempts",
    "segments", "encoding", "rule", "cycles", "drop_preference", "free", "for_category", "window", "action",
    "benefit_type", "decision_number", "imported", "application_id", "parent_id", "account_id", "via",
})


def scrub(details: Any) -> Any:
    """Audit details with the family's texts anonymised (KEPT_DETAILS stay)."""
    if isinstance(details, dict):
        return {k: (v if k in KEPT_DETAILS else scrub(v)) for k, v in details.items()}
    if isinstance(details, list):
        return [scrub(v) for v in details]
    if isinstance(details, str):
        return ANONYMISED
    return details


# ---------------------------------------------------------------- the clock


def _columns() -> list[sa.Column]:
    when = sa.DateTime(timezone=True)
    return [
        sa.Column("application_id", sa.String(100), primary_key=True),
        sa.Column("parent_id", sa.String(100), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("closed_at", when, nullable=False),
        sa.Column("anonymised_at", when, nullable=True),
        sa.Column("erasure_requested_at", when, nullable=True),
    ]


_OPEN = sa.text("anonymised_at IS NULL")


def _indexes() -> list[tuple[str, list[str], dict]]:
    # The job reads, per outcome, the applications closed before that
    # outcome's bound: a range of this index (not yet anonymised only).
    return [(f"ix_{TABLE}_due", ["outcome", "closed_at"], {"postgresql_where": _OPEN, "sqlite_where": _OPEN}),
            (f"ix_{TABLE}_parent", ["parent_id"], {})]


def create_retention_table(op) -> None:
    """Migration step for a service's retention clock."""
    op.create_table(TABLE, *_columns())
    for name, cols, kw in _indexes():
        op.create_index(name, TABLE, cols, **kw)


def drop_retention_table(op) -> None:
    op.drop_table(TABLE)


@dataclass(frozen=True)
class Closed:
    """One application a service holds data of, as its clock has it."""
    application_id: str
    parent_id: str | None
    outcome: str
    closed_at: datetime
    due_at: datetime
    erasure: bool = False


def _insert(s: Session):
    return postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert


class RetentionClock:
    """The `retention_clock` table of one service (bound to its metadata):
    when each application it holds data of closed, and how. The periods are
    applied when the job reads it, so a changed policy applies to every
    application already closed too."""

    def __init__(self, metadata: sa.MetaData):
        self.table = sa.Table(TABLE, metadata, *_columns(),
                              *(sa.Index(name, *cols, **kw) for name, cols, kw in _indexes()))

    def closed(self, s: Session, rows: Iterable[tuple[str, str | None, str, datetime]]) -> None:
        """(application id, parent id, outcome, closed at) of applications
        that closed; a later closing (enrolled, then left) restarts the
        clock; an anonymised application stays as it is."""
        values = [{"application_id": a, "parent_id": p, "outcome": o, "closed_at": utc(c)} for a, p, o, c in rows]
        if not values:
            return
        t = self.table
        stmt = _insert(s)(t).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.application_id],
            set_={"outcome": stmt.excluded.outcome, "closed_at": stmt.excluded.closed_at,
                  "parent_id": sa.func.coalesce(stmt.excluded.parent_id, t.c.parent_id)},
            where=sa.and_(t.c.anonymised_at.is_(None), stmt.excluded.closed_at >= t.c.closed_at))
        s.execute(stmt)

    def due(self, s: Session, now: datetime, policy: RetentionPolicy, limit: int, *,
            lock: bool = True) -> list[Closed]:
        """Applications whose period ended (or whose erasure was granted),
        oldest first, locked (others' locks skipped)."""
        t = self.table
        now = utc(now)
        ended = [sa.and_(t.c.outcome == o, t.c.closed_at <= now - policy.period(o)) for o in OUTCOMES]
        ended.append(sa.and_(t.c.outcome.not_in(OUTCOMES), t.c.closed_at <= now - policy.period("")))
        q = (sa.select(t).where(t.c.anonymised_at.is_(None),
                                sa.or_(*ended, t.c.erasure_requested_at.is_not(None)))
             .order_by(t.c.closed_at).limit(limit))
        if lock:
            q = q.with_for_update(skip_locked=True)
        out = []
        for r in s.execute(q):
            erasure = r.erasure_requested_at is not None
            closed_at = aware(r.closed_at)
            due_at = aware(r.erasure_requested_at) if erasure else policy.due_at(r.outcome, closed_at)
            out.append(Closed(r.application_id, r.parent_id, r.outcome, closed_at, due_at, erasure))
        return out

    def get(self, s: Session, application_id: str) -> dict | None:
        row = s.execute(sa.select(self.table).where(self.table.c.application_id == application_id)).mappings().first()
        return dict(row) if row else None

    def mark(self, s: Session, ids: list[str], at: datetime) -> None:
        s.execute(sa.update(self.table).where(self.table.c.application_id.in_(ids)).values(anonymised_at=utc(at)))

    def anonymised(self, s: Session, ids: Iterable[str]) -> set[str]:
        """Of these applications, the ones already anonymised here."""
        ids = list(ids)
        return set(s.scalars(sa.select(self.table.c.application_id).where(
            self.table.c.application_id.in_(ids), self.table.c.anonymised_at.is_not(None)))) if ids else set()

    def owners_done(self, s: Session, owner_column, application_column, owners: set[str],
                    now_done: set[str]) -> set[str]:
        """Of these owners (a parent, an account), the ones every application
        of whom is anonymised here once `now_done` are: what is theirs alone
        may go too."""
        if not owners:
            return set()
        owned = s.execute(sa.select(owner_column, application_column).where(owner_column.in_(owners))).all()
        done = now_done | self.anonymised(s, [app for _, app in owned])
        return owners - {owner for owner, app in owned if app not in done}

    def request_erasure(self, s: Session, closed: Closed, at: datetime) -> None:
        """The family's erasure of a closed application was granted: due now
        (the row is made if this service had not heard of the closing yet)."""
        t = self.table
        stmt = _insert(s)(t).values(application_id=closed.application_id, parent_id=closed.parent_id,
                                    outcome=closed.outcome, closed_at=utc(closed.closed_at),
                                    erasure_requested_at=utc(at))
        s.execute(stmt.on_conflict_do_update(index_elements=[t.c.application_id],
                                             set_={"erasure_requested_at": utc(at)},
                                             where=t.c.anonymised_at.is_(None)))


# ----------------------------------------------------------------- the job


class Anonymiser(Protocol):
    """A service's own data of closed applications, anonymised in place."""

    #: "table.column" (or "table: what") it rewrites, for the dry-run report
    fields: tuple[str, ...]

    def anonymise(self, s: Session, closed: list[Closed], at: datetime) -> tuple[dict[str, int], list[str]]:
        """Rewrites the data of these applications; returns the rows touched
        per table and the audit subjects whose details are the family's."""
        ...


@dataclass
class Report:
    service: str
    dry_run: bool
    by_outcome: Counter = field(default_factory=Counter)
    tables: Counter = field(default_factory=Counter)
    fields: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {"service": self.service, "dry_run": self.dry_run, "applications": sum(self.by_outcome.values()),
                "by_outcome": dict(sorted(self.by_outcome.items())), "rows": dict(sorted(self.tables.items())),
                "fields": list(self.fields)}


class RetentionJob:
    """The daily job of one service: what is due is anonymised, batch by
    batch, each batch one transaction with its audit rows."""

    def __init__(self, service: str, sessions: sessionmaker[Session], clock: RetentionClock, trail: AuditTrail,
                 anonymiser: Anonymiser, policy: RetentionPolicy | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.service = service
        self.sessions = sessions
        self.clock = clock
        self.trail = trail
        self.anonymiser = anonymiser
        self.policy = policy or RetentionPolicy()
        self.now = now
        self.actor = Principal(actor=f"service:{service}", role=SERVICE)
        self._done_on: date | None = None

    def closed(self, s: Session, event) -> None:
        """application.closed.v1, in the consumer's transaction."""
        d = event.data
        self.clock.closed(s, [(d["application_id"], d.get("parent_id"), d["outcome"],
                               datetime.fromisoformat(d["closed_at"]))])

    def daily(self) -> Report | None:
        """Once per UTC day (the first call after midnight; again after a failure)."""
        today = self.now().astimezone(UTC).date()
        if self._done_on == today:
            return None
        report = self.run()
        self._done_on = today
        return report

    def run(self, *, dry_run: bool = False, batch: int = 500) -> Report:
        report = Report(self.service, dry_run, fields=tuple(self.anonymiser.fields))
        if dry_run:
            with self.sessions() as s:
                for c in self.clock.due(s, self.now(), self.policy, 10_000_000, lock=False):
                    report.by_outcome[c.outcome] += 1
            return report
        while True:
            n = self._batch(batch, report)
            if n < batch:
                break
        if report.by_outcome:
            log.info("retention.anonymised", service=self.service, **report.as_dict()["by_outcome"])
        return report

    def _batch(self, batch: int, report: Report) -> int:
        with self.sessions() as s, s.begin():
            due = self.clock.due(s, self.now(), self.policy, batch)
            if due:
                self._anonymise(s, due, report)
            return len(due)

    def _anonymise(self, s: Session, due: list[Closed], report: Report) -> None:
        now = self.now()
        tables, subjects = self.anonymiser.anonymise(s, due, now)
        self.clock.mark(s, [c.application_id for c in due], now)
        self.trail.rewrite(s, subjects, scrub)
        self.trail.record_many(s, self.actor, [{
            "action": "retention.anonymised", "subject": f"application:{c.application_id}",
            "details": {"outcome": c.outcome, "closed_at": c.closed_at.isoformat(), "due_at": c.due_at.isoformat(),
                        "erasure": c.erasure, "tables": sorted(tables)}} for c in due], at=now)
        report.by_outcome.update(c.outcome for c in due)
        report.tables.update(tables)

    def erase(self, s: Session, application_id: str, parent_id: str | None, outcome: str,
              closed_at: datetime) -> Report:
        """A family's erasure request the rules allowed (the queue decides,
        application.erasure_granted.v1): this service's data of the
        application is anonymised now, in the caller's transaction, the same
        way as at the end of its retention period."""
        now = self.now()
        closed = Closed(application_id, parent_id, outcome, closed_at, now, erasure=True)
        self.clock.request_erasure(s, closed, now)
        report = Report(self.service, False, fields=tuple(self.anonymiser.fields))
        row = self.clock.get(s, application_id)
        if row and row["anonymised_at"] is None:
            self._anonymise(s, [closed], report)
        return report

    def erasure_granted(self, s: Session, event) -> None:
        """application.erasure_granted.v1, in the consumer's transaction."""
        d = event.data
        self.erase(s, d["application_id"], d.get("parent_id"), d["outcome"], datetime.fromisoformat(d["closed_at"]))

    def route(self, s: Session, event) -> None:
        """application.closed.v1 or application.erasure_granted.v1."""
        (self.closed if event.type == CLOSED else self.erasure_granted)(s, event)


def with_retention(handle: Callable, retention: RetentionJob | None) -> Callable:
    """A consumer's handler: the closing of an application and a family's
    granted erasure go to the service's retention job (without one, they
    are passed over), every other event to `handle`."""
    def routed(s: Session, event) -> None:
        if event.type not in (CLOSED, ERASURE_GRANTED):
            handle(s, event)
        elif retention is not None:
            retention.route(s, event)
    return routed


@dataclass(frozen=True)
class ServiceRetention:
    """What one service keeps of a family: its retention clock, its audit
    trail and how it anonymises; makes that service's job."""

    service: str
    clock: RetentionClock
    trail: AuditTrail
    anonymiser: Anonymiser

    def job(self, sessions: sessionmaker[Session], policy: RetentionPolicy | None = None,
            now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> RetentionJob:
        return RetentionJob(self.service, sessions, self.clock, self.trail, self.anonymiser, policy, now)

    def job_on_own_database(self, settings) -> RetentionJob:
        """The daily job on the service's database, with the deployment's policy."""
        from kezek.db import make_session_factory, service_engine

        return self.job(make_session_factory(service_engine(settings, self.service)), settings.retention())


def daily_loop(job: RetentionJob, *, poll: float = 600.0) -> Callable:
    """A background loop (`kezek consume` runs it with the service's jobs):
    the job once per UTC day, checked every `poll` seconds."""
    def loop(stop) -> None:
        while not stop.is_set():
            try:
                job.daily()
            except Exception as exc:   # the database may be restarting: try again later
                log.warning("retention.failed", service=job.service, error=repr(exc))
            stop.wait(poll)
    loop.__name__ = f"{job.service}-retention"
    return loop
