"""The registration service's tables. Its database is its own (kezek_registration).

Secrets are never stored as given: drafts, activation links and sessions are
keyed by a SHA-256 of their random token, e-mail codes by a keyed hash,
passwords by argon2.
"""
from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kezek.audit import AuditTrail
from kezek.outbox import Outbox
from kezek.retention import RetentionClock
from kezek.ratelimit import RateLimits


class Base(DeclarativeBase):
    type_annotation_map = {datetime: sa.DateTime(timezone=True), dict: sa.JSON, list: sa.JSON}


outbox = Outbox(Base.metadata, source="registration")
trail = AuditTrail(Base.metadata)
# When each closed application closed and how (kezek/retention.py).
retention_clock = RetentionClock(Base.metadata)
rate_limits = RateLimits.table_in(Base.metadata)

# An application no longer holds its child's PIN once the queue removed or
# refused it, or the child left the kindergarten it was enrolled in.
CLOSED = ("removed", "refused", "left")
LIVE = sa.text("status NOT IN ('removed', 'refused', 'left')")


class Draft(Base):
    """An application being filled in; saved after every step."""
    __tablename__ = "drafts"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    country: Mapped[str] = mapped_column(sa.String(2))
    locale: Mapped[str] = mapped_column(sa.String(5))
    child: Mapped[dict] = mapped_column(default=dict)
    parent: Mapped[dict] = mapped_column(default=dict)
    address: Mapped[dict] = mapped_column(default=dict)     # resolved by the registry
    email_code: Mapped[dict | None] = mapped_column(sa.JSON, nullable=True)
    email_verified: Mapped[str | None] = mapped_column(sa.String(254), nullable=True)
    application_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    pin: Mapped[str] = mapped_column(sa.String(14), index=True)
    surname: Mapped[str] = mapped_column(sa.String(60))
    name: Mapped[str] = mapped_column(sa.String(60))
    patronymic: Mapped[str | None] = mapped_column(sa.String(60), nullable=True)
    phone: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(5))
    tunduk_sub: Mapped[str | None] = mapped_column(sa.String(200), unique=True, nullable=True)
    created_at: Mapped[datetime]
    activated_at: Mapped[datetime | None] = mapped_column(nullable=True)


class ActivationToken(Base):
    __tablename__ = "activation_tokens"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Application(Base):
    __tablename__ = "applications"
    __table_args__ = (
        # DOMAIN.md section 3: one queue entry per child, whoever applies.
        sa.Index("ux_applications_live_child_pin", "child_pin", unique=True,
                 postgresql_where=LIVE, sqlite_where=LIVE),
    )
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    country: Mapped[str] = mapped_column(sa.String(2))
    child_pin: Mapped[str] = mapped_column(sa.String(14))
    child_surname: Mapped[str] = mapped_column(sa.String(60))
    child_name: Mapped[str] = mapped_column(sa.String(60))
    child_patronymic: Mapped[str | None] = mapped_column(sa.String(60), nullable=True)
    child_birth_date: Mapped[date] = mapped_column(sa.Date)
    child_sex: Mapped[str | None] = mapped_column(sa.String(6), nullable=True)
    parent: Mapped[dict]          # role, names, PIN, identity document
    address: Mapped[dict]         # codes, house, flat, coordinates, names
    phone: Mapped[str] = mapped_column(sa.String(16))
    email: Mapped[str] = mapped_column(sa.String(254))
    category: Mapped[str] = mapped_column(sa.String(50))
    language: Mapped[str] = mapped_column(sa.String(5))
    preferences: Mapped[list]
    status: Mapped[str] = mapped_column(sa.String(20), default="submitted")
    submitted_at: Mapped[datetime]


class Session(Base):
    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(10))     # cookie | bearer
    via: Mapped[str] = mapped_column(sa.String(10))      # password | tunduk
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class SignInFailure(Base):
    """Wrong passwords counted under one key (services/registration/limits.py):
    a SHA-256 of the login and client, of the client, or of the login."""
    __tablename__ = "sign_in_failures"
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    last_at: Mapped[datetime | None] = mapped_column(nullable=True)
    noticed_at: Mapped[datetime | None] = mapped_column(nullable=True)   # the owner was told (login keys)


class SignInClient(Base):
    """A client (its address, hashed) an account signed in from: the owner's
    usual clients are not slowed by wrong passwords others give."""
    __tablename__ = "sign_in_clients"
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), primary_key=True)
    client_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    last_at: Mapped[datetime]


class CodeSend(Base):
    """One e-mail code sent: limits per address and per client across drafts."""
    __tablename__ = "code_sends"
    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    address_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    client_hash: Mapped[str] = mapped_column(sa.String(64), index=True)
    at: Mapped[datetime] = mapped_column(index=True)


class OidcRequest(Base):
    """One sign-in through the national identity provider in flight."""
    __tablename__ = "oidc_requests"
    state: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(sa.String(64))
    code_verifier: Mapped[str] = mapped_column(sa.String(128))
    redirect_uri: Mapped[str] = mapped_column(sa.String(500))
    created_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
