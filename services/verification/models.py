"""The verification service's tables. Its database is its own (kezek_verification).

- Staff accounts (argon2 hashes) and their sessions (keyed by a SHA-256 of
  the random token, never the token).
- Read models built from other services' facts (Kafka): applicants (from
  application.submitted / application.received), referrals and their event
  history (from referral.*). The queue service stays the system of record.
- The department's own records: certificates and their scans (by SHA-256),
  decisions, abuse cases, voucher applications and commission decisions.
- Personal data sealed at rest (kezek/sealing.py): the child's PIN (with its
  lookup hash, `child_pin_hash`, which the searches and the one-open-abuse-
  case index use), names, the parent's phone and e-mail, the certificate's
  number and organisation. Scans are sealed files in the service's file
  store (kezek/files.py), never in these tables: `scans` keeps their names.
- The audit trail (kezek/audit.py, `audit_trail`): append-only; the
  migrations install triggers that refuse DELETE and UPDATE on it (and
  TRUNCATE on PostgreSQL, where only the retention job may rewrite).

Times are stored in UTC.
"""
from __future__ import annotations

from datetime import UTC, date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kezek.sealing import Sealed
from kezek.tables import TYPE_MAP, service_tables


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Moments stored in UTC on every database: SQLite keeps no offset, so a
    local 00:00 deadline stored as given would come back six hours off."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware moment")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return utc(value)


class Base(DeclarativeBase):
    type_annotation_map = {**TYPE_MAP, datetime: UTCDateTime()}


outbox, audit_trail, retention_clock = service_tables(Base, "verification")

SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


class Staff(Base):
    __tablename__ = "staff"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    login: Mapped[str] = mapped_column(sa.String(40), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    full_name: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(20))
    district: Mapped[str] = mapped_column(sa.String(100), default="")
    kindergarten: Mapped[str] = mapped_column(sa.String(100), default="", server_default="")  # kindergarten staff
    locale: Mapped[str] = mapped_column(sa.String(5), default="ru")
    active: Mapped[bool] = mapped_column(default=True)
    # Wrong passwords since the last sign-in, told to the owner at the next.
    failed_logins: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]


class StaffSession(Base):
    __tablename__ = "staff_sessions"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    staff_id: Mapped[str] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    notice: Mapped[dict | None] = mapped_column(nullable=True)   # {"failed": n, "last_at": iso}


class SignInFailure(Base):
    """Wrong passwords counted under one key: a SHA-256 of the account and
    client, or of the client alone (neither is kept in clear)."""
    __tablename__ = "sign_in_failures"
    key: Mapped[str] = mapped_column(sa.String(80), primary_key=True)
    count: Mapped[int]
    last_at: Mapped[datetime] = mapped_column(index=True)


class Applicant(Base):
    """A child's application as the registration service announced it."""
    __tablename__ = "applicants"
    application_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    child_pin: Mapped[str | None] = mapped_column(Sealed("child_pin", hashed_as="pin"), nullable=True)
    child_pin_hash: Mapped[str | None] = mapped_column(sa.String(64), index=True, nullable=True)
    child_surname: Mapped[str | None] = mapped_column(Sealed("child_surname"), nullable=True)
    child_name: Mapped[str | None] = mapped_column(Sealed("child_name"), nullable=True)
    child_patronymic: Mapped[str | None] = mapped_column(Sealed("child_patronymic"), nullable=True)
    child_birth_date: Mapped[date | None] = mapped_column(nullable=True)
    parent_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    parent_phone: Mapped[str | None] = mapped_column(Sealed("parent_phone"), nullable=True)
    parent_email: Mapped[str | None] = mapped_column(Sealed("parent_email"), nullable=True)
    country: Mapped[str | None] = mapped_column(sa.String(2), nullable=True)
    region: Mapped[str | None] = mapped_column(sa.String(20), nullable=True)
    district: Mapped[str | None] = mapped_column(sa.String(100), index=True, nullable=True)
    category: Mapped[str | None] = mapped_column(sa.String(50), nullable=True)
    submitted_category: Mapped[str | None] = mapped_column(sa.String(50), nullable=True)
    language: Mapped[str | None] = mapped_column(sa.String(5), nullable=True)
    queue_date: Mapped[datetime | None] = mapped_column(nullable=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="queued")
    updated_at: Mapped[datetime]


class Referral(Base):
    """A referral as the queue service announced it (referral.* facts)."""
    __tablename__ = "referrals"
    referral_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    application_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    kindergarten_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    kindergarten_name: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    category: Mapped[str | None] = mapped_column(sa.String(50), nullable=True)
    needs_confirmation: Mapped[bool] = mapped_column(default=False)
    state: Mapped[str] = mapped_column(sa.String(30), index=True)
    issued_at: Mapped[datetime | None] = mapped_column(nullable=True)
    deadline: Mapped[datetime | None] = mapped_column(nullable=True)
    certificate_requests: Mapped[int] = mapped_column(default=0)
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    reason: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    updated_at: Mapped[datetime]


class ReferralEvent(Base):
    """Every referral fact seen, for the child's history."""
    __tablename__ = "referral_events"
    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    referral_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    type: Mapped[str] = mapped_column(sa.String(100))
    at: Mapped[datetime]
    reason: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)


class Scan(Base):
    """An uploaded scan, stored once per content (its SHA-256), sealed in the
    file store under `file_name`."""
    __tablename__ = "scans"
    sha256: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    content_type: Mapped[str] = mapped_column(sa.String(50))
    size: Mapped[int]
    file_name: Mapped[str] = mapped_column(sa.String(100))
    stored_at: Mapped[datetime]


class Certificate(Base):
    """A certificate from the place of work, as the caseworker recorded it."""
    __tablename__ = "certificates"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    referral_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    organisation: Mapped[str] = mapped_column(Sealed("certificate_organisation"))   # the parent's employer
    number: Mapped[str] = mapped_column(Sealed("certificate_number"))
    issued_on: Mapped[date]
    scan_sha256: Mapped[str] = mapped_column(sa.ForeignKey("scans.sha256"))
    scan_name: Mapped[str] = mapped_column(Sealed("scan_name"), default="")   # as uploaded: may name the family
    recorded_by: Mapped[str] = mapped_column(sa.String(36))
    recorded_at: Mapped[datetime]


class Decision(Base):
    """What a caseworker asked of the referral workflow and what it answered."""
    __tablename__ = "decisions"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    referral_id: Mapped[str] = mapped_column(sa.String(100), index=True)
    action: Mapped[str] = mapped_column(sa.String(30))
    outcome: Mapped[str] = mapped_column(sa.String(20))         # accepted | refused
    result_event: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    reason: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    refusal: Mapped[str | None] = mapped_column(sa.String(1000), nullable=True)     # the workflow's words
    refusal_code: Mapped[str | None] = mapped_column(sa.String(60), nullable=True)  # and its code, for pages
    refusal_params: Mapped[dict | None] = mapped_column(nullable=True)
    certificate_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    staff_id: Mapped[str] = mapped_column(sa.String(36))
    nonce: Mapped[str] = mapped_column(sa.String(64), unique=True)
    at: Mapped[datetime]


class AbuseCase(Base):
    __tablename__ = "abuse_cases"
    # At most one open case per child.
    __table_args__ = (sa.Index("ux_abuse_cases_open_child", "child_pin_hash", unique=True,
                               postgresql_where=sa.text("status = 'open'"),
                               sqlite_where=sa.text("status = 'open'")),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    child_pin: Mapped[str] = mapped_column(Sealed("child_pin", hashed_as="pin"))
    child_pin_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    application_id: Mapped[str] = mapped_column(sa.String(100))
    district: Mapped[str | None] = mapped_column(sa.String(100), index=True, nullable=True)
    rule: Mapped[str] = mapped_column(sa.String(60))
    cycles: Mapped[int]
    referral_ids: Mapped[list] = mapped_column(default=list)
    applications: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(20), default="open")   # open | revoked | dismissed
    opened_at: Mapped[datetime]
    resolved_by: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    resolution: Mapped[str | None] = mapped_column(sa.String(500), nullable=True)
    rejected_referral_id: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)


class VoucherApplication(Base):
    __tablename__ = "voucher_applications"
    application_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    category: Mapped[str] = mapped_column(sa.String(50))
    district: Mapped[str | None] = mapped_column(sa.String(100), index=True, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(20), default="pending")  # pending | approved | rejected
    submitted_at: Mapped[datetime]


class VoucherDecision(Base):
    __tablename__ = "voucher_decisions"
    number: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    application_id: Mapped[str] = mapped_column(sa.String(100), unique=True)
    decision: Mapped[str] = mapped_column(sa.String(20))
    benefit_type: Mapped[str | None] = mapped_column(sa.String(30), nullable=True)
    documents: Mapped[list] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    members: Mapped[list] = mapped_column(default=list)        # [{"login", "name"}] present
    district: Mapped[str | None] = mapped_column(sa.String(100), nullable=True)
    decided_by: Mapped[str] = mapped_column(sa.String(36))
    decided_at: Mapped[datetime]
