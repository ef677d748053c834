"""The queue service's tables. Its database is its own (kezek_queue).

The invariants of DOMAIN.md section 6 are enforced here as well as in the
code, so that two allocations running at once cannot break them:
- one live referral per child: a partial unique index on referrals;
- one queue entry per child PIN: a partial unique index on the PIN's lookup
  hash (the PIN and the child's names are sealed at rest, kezek/sealing.py;
  the public queue shows the masked name kept beside them);
- a place is free, held or enrolled, never two at once: counters per place
  pool with CHECK constraints, changed only under the pool's row lock in the
  same transaction as the referral rows they count.
"""
from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

from kezek.sealing import Sealed
from kezek.tables import TYPE_MAP, service_tables


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


# The audit trail: every state change and every staff look, with the verified actor.
outbox, audit_trail, retention_clock = service_tables(Base, "queue")

BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements only INTEGER keys
# Kindergarten ids, best first. A text array on PostgreSQL (GIN-indexed for
# "who lists this kindergarten"), JSON elsewhere.
Preferences = sa.JSON().with_variant(postgresql.ARRAY(sa.String(100)), "postgresql")

STATUSES = ("queued", "referred", "enrolled", "paused", "removed", "left", "aged_out")
# An entry that is closed frees its child's PIN: removed from the queue, or
# left the kindergarten it was enrolled in (joining again starts a new queue date).
# (A child who reached school age, aged_out, keeps its PIN taken: a new
# entry would only leave again at the next midnight.)
CLOSED = ("removed", "left")
NOT_REMOVED = sa.text("status NOT IN ('removed','left')")
# Children waiting in the queue: they leave it at their school-age birthday.
WAITING = sa.text("status IN ('queued', 'paused')")
LIVE = sa.text("status = 'live'")
OPEN_POOL = ""  # places.for_category of places any category may take


class Kindergarten(Base):
    __tablename__ = "kindergartens"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    district: Mapped[str] = mapped_column(sa.String(100))
    address: Mapped[str] = mapped_column(sa.String(200), default="")
    lat: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    lon: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    languages: Mapped[list] = mapped_column(default=list)
    created_at: Mapped[datetime]
    # Closed by its district office: no places, no preferences (usecases/kindergartens.py).
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Application(Base):
    """A child's queue entry; the queue date is kept forever."""
    __tablename__ = "applications"
    id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    pin: Mapped[str] = mapped_column(Sealed("child_pin", hashed_as="pin"))
    pin_hash: Mapped[str] = mapped_column(sa.String(64))
    parent_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    country: Mapped[str] = mapped_column(sa.String(2), default="KG")
    surname: Mapped[str] = mapped_column(Sealed("child_surname"))
    name: Mapped[str] = mapped_column(Sealed("child_name"))
    patronymic: Mapped[str | None] = mapped_column(Sealed("child_patronymic"), nullable=True)
    # What the public queue shows ("A***** A."): published anyway, so kept in clear.
    masked_name: Mapped[str] = mapped_column(sa.String(80), default="")
    birth_date: Mapped[date] = mapped_column(sa.Date)
    cohort: Mapped[int] = mapped_column(sa.Integer)  # birth year, kept for the indexes
    category: Mapped[str] = mapped_column(sa.String(50))
    claimed_category: Mapped[str] = mapped_column(sa.String(50))  # as submitted; `category` may fall back to general
    queue_date: Mapped[datetime]
    language: Mapped[str] = mapped_column(sa.String(5))
    preferences: Mapped[list] = mapped_column(Preferences)
    locale: Mapped[str] = mapped_column(sa.String(5), default="ru")
    status: Mapped[str] = mapped_column(sa.String(10), default="queued")
    paused_until: Mapped[datetime | None] = mapped_column(nullable=True)
    source_event_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    removed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    removal_reason: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    left_at: Mapped[datetime | None] = mapped_column(nullable=True)   # left the kindergarten it was enrolled in

    __table_args__ = (
        sa.CheckConstraint("status IN ('queued','referred','enrolled','paused','removed','left','aged_out')",
                           name="ck_applications_status"),
        sa.CheckConstraint("status <> 'paused' OR paused_until IS NOT NULL", name="ck_applications_paused_until"),
        # One queue entry per child, whoever registers it; a closed entry
        # (removed, left) frees the PIN, and joining again starts a new queue date.
        sa.Index("uq_applications_pin_live", "pin_hash", unique=True,
                 postgresql_where=NOT_REMOVED, sqlite_where=NOT_REMOVED),
        sa.Index("ix_applications_group", "cohort", "language", "status"),
        sa.Index("ix_applications_paused", "paused_until",
                 postgresql_where=sa.text("status = 'paused'"), sqlite_where=sa.text("status = 'paused'")),
        sa.Index("ix_applications_prefs", "preferences", postgresql_using="gin"),
        # The daily ageing-out job's range scan (domain/ageing.py): waiting
        # children only, so it reads the day's birthdays and nothing else.
        sa.Index("ix_applications_school_age", "birth_date", postgresql_where=WAITING, sqlite_where=WAITING),
    )


class _OfPool:
    """The pool places belong to: a kindergarten, a cohort (birth year), a
    language, and the category they are reserved for (OPEN_POOL: none)."""

    @declared_attr
    def kindergarten_id(cls) -> Mapped[str]:
        return mapped_column(sa.ForeignKey("kindergartens.id"))

    cohort: Mapped[int] = mapped_column(sa.Integer)
    language: Mapped[str] = mapped_column(sa.String(5))
    for_category: Mapped[str] = mapped_column(sa.String(50), default=OPEN_POOL)


class PlacePool(_OfPool, Base):
    """Free, held and enrolled places of one kindergarten, cohort and
    language, open to all or reserved for one category."""
    __tablename__ = "places"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    free: Mapped[int] = mapped_column(sa.Integer, default=0)
    held: Mapped[int] = mapped_column(sa.Integer, default=0)
    enrolled: Mapped[int] = mapped_column(sa.Integer, default=0)

    __table_args__ = (
        sa.UniqueConstraint("kindergarten_id", "cohort", "language", "for_category", name="uq_places_pool"),
        sa.CheckConstraint("free >= 0", name="ck_places_free"),
        sa.CheckConstraint("held >= 0", name="ck_places_held"),
        sa.CheckConstraint("enrolled >= 0", name="ck_places_enrolled"),
        sa.Index("ix_places_free", "id", postgresql_where=sa.text("free > 0"), sqlite_where=sa.text("free > 0")),
    )


class Publication(_OfPool, Base):
    """Places published (or scheduled), and free places withdrawn (negative)."""
    __tablename__ = "place_publications"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    count: Mapped[int] = mapped_column(sa.Integer)
    publish_at: Mapped[datetime]
    published_at: Mapped[datetime | None] = mapped_column(nullable=True)
    actor: Mapped[str] = mapped_column(sa.String(100))
    created_at: Mapped[datetime]
    # A scheduled publication called off before its moment.
    cancelled_at: Mapped[datetime | None] = mapped_column(nullable=True)
    cancelled_by: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)

    __table_args__ = (
        sa.CheckConstraint("count <> 0", name="ck_publications_count"),
        sa.Index("ix_publications_due", "publish_at",
                 postgresql_where=sa.text("published_at IS NULL"), sqlite_where=sa.text("published_at IS NULL")),
    )


class Referral(Base):
    """A place held for one child in one kindergarten."""
    __tablename__ = "referrals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    application_id: Mapped[str] = mapped_column(sa.ForeignKey("applications.id"))
    place_id: Mapped[int] = mapped_column(sa.ForeignKey("places.id"))
    kindergarten_id: Mapped[str] = mapped_column(sa.String(100))
    cohort: Mapped[int] = mapped_column(sa.Integer)
    language: Mapped[str] = mapped_column(sa.String(5))
    for_category: Mapped[str] = mapped_column(sa.String(50), default=OPEN_POOL)
    category: Mapped[str] = mapped_column(sa.String(50))
    needs_confirmation: Mapped[bool] = mapped_column(sa.Boolean)
    preference_index: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(10), default="live")  # live | enrolled | ended
    state: Mapped[str] = mapped_column(sa.String(30))  # the workflow's state (awaiting_confirmation ...)
    outcome: Mapped[str | None] = mapped_column(sa.String(30), nullable=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("allocation_runs.id"))
    issued_at: Mapped[datetime]
    deadline: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    external_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)  # id in a previous system
    extended: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())  # the one extension is used
    confirmed_at: Mapped[datetime | None] = mapped_column(nullable=True)  # the privilege was confirmed then
    # The workflow is started after the commit; NULL until it is, so a crash
    # in between is caught up by the starter (the id makes it idempotent).
    workflow_started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    # The allocation wrote its referral.issued fact (since issue 15): the
    # workflow is started with ReferralInput.announced and does not record
    # it again. False for an imported referral and for those issued before.
    announced: Mapped[bool] = mapped_column(sa.Boolean, default=False, server_default=sa.false())

    __table_args__ = (
        sa.CheckConstraint("status IN ('live','enrolled','ended')", name="ck_referrals_status"),
        # At most one live referral per child, whatever races in Python.
        sa.Index("uq_referrals_live_child", "application_id", unique=True,
                 postgresql_where=LIVE, sqlite_where=LIVE),
        sa.Index("ix_referrals_unstarted", "id", postgresql_where=sa.text("workflow_started_at IS NULL"),
                 sqlite_where=sa.text("workflow_started_at IS NULL")),
        sa.Index("ix_referrals_application", "application_id"),
        sa.Index("uq_referrals_external_id", "external_id", unique=True),
    )


class AllocationRun(Base):
    """One allocation, with what it started from, so it can be replayed."""
    __tablename__ = "allocation_runs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    on_date: Mapped[date] = mapped_column(sa.Date)
    trigger: Mapped[str] = mapped_column(sa.String(200))
    policy: Mapped[dict]
    free_before: Mapped[list]             # [[kindergarten, cohort, language, category|null, n], ...]
    candidates: Mapped[bytes] = mapped_column(sa.LargeBinary)  # zlib JSON lines of the children considered
    candidates_count: Mapped[int] = mapped_column(sa.Integer)
    allocated: Mapped[int] = mapped_column(sa.Integer)
    digest: Mapped[str] = mapped_column(sa.String(64))  # sha256 of the allocations, in order


class AllocationRecord(Base):
    """One allocation of a run: who got which place and the inputs that decided it."""
    __tablename__ = "allocation_audit"
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("allocation_runs.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    referral_id: Mapped[int] = mapped_column(BigId)
    application_id: Mapped[str] = mapped_column(sa.String(100))
    kindergarten_id: Mapped[str] = mapped_column(sa.String(100))
    cohort: Mapped[int] = mapped_column(sa.Integer)
    language: Mapped[str] = mapped_column(sa.String(5))
    for_category: Mapped[str | None] = mapped_column(sa.String(50), nullable=True)
    preference_index: Mapped[int] = mapped_column(sa.Integer)
    inputs: Mapped[dict]

    __table_args__ = (sa.Index("ix_allocation_audit_application", "application_id"),)


class PolicyVersion(Base):
    """The policy in force is the latest version; every change is kept."""
    __tablename__ = "policy_versions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    policy: Mapped[dict]
    changed_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(sa.String(100))
    reason: Mapped[str] = mapped_column(sa.String(500))


class AllocationRequest(Base):
    """Something that can change the outcome happened: allocate. Written in
    the transaction of the change, so a crash cannot lose the trigger.
    `pools`: the [kindergarten, cohort, language] groups of places the change
    may have made takeable (a place freed there, a child waiting who lists
    it), so the run after it reads only those; NULL: every pool (a new day,
    a policy change, a large import)."""
    __tablename__ = "allocation_requests"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    reason: Mapped[str] = mapped_column(sa.String(200))
    pools: Mapped[list | None] = mapped_column(nullable=True)
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(100), unique=True, nullable=True)
    created_at: Mapped[datetime]
    done_at: Mapped[datetime | None] = mapped_column(nullable=True)
    run_id: Mapped[int | None] = mapped_column(BigId, nullable=True)

    __table_args__ = (
        sa.Index("ix_allocation_requests_pending", "id", postgresql_where=sa.text("done_at IS NULL"),
                 sqlite_where=sa.text("done_at IS NULL")),
    )


class PublishedPosition(Base):
    """The position last published for a child (application.position_changed):
    a new computation publishes only where it differs. Kept apart from
    `applications`, whose many indexes a national run would otherwise
    rewrite for every child that moved up."""
    __tablename__ = "queue_positions"
    application_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    kindergarten_id: Mapped[str] = mapped_column(sa.String(100))
    position: Mapped[int] = mapped_column(sa.Integer)
    changed_at: Mapped[datetime]


class PositionChange(Base):
    """A (cohort, kindergarten) whose waiting children may have moved: written
    in the transaction of the change (join, removal, allocation ...), consumed
    by the publication that follows it, so a crash in between only delays
    it. Cohort and kindergarten NULL: every pool (a policy change)."""
    __tablename__ = "position_changes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    cohort: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    kindergarten_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
