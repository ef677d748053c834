"""The registration service's tables. Its database is its own (kezek_registration).

Secrets are never stored as given: drafts, activation links and sessions are
keyed by a SHA-256 of their random token, e-mail codes by a keyed hash,
passwords by argon2.

Personal data is sealed at rest (kezek/sealing.py): PINs (the child's and the
parent's, each with its lookup hash: one live application per child is a
unique index on the hash, the national sign-in finds the parent by it), the
identity document and everything else of the parent (the `parent` JSON),
names, address, phones and e-mails (the account's e-mail with its lookup
hash: it is the login), and the drafts' steps. What stays in clear is what
queries need and names nobody: ids, dates, status, category, language,
preferences, the country.
"""
from __future__ import annotations

from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kezek.ratelimit import RateLimits
from kezek.sealing import Sealed, SealedJSON
from kezek.tables import TYPE_MAP, service_tables


class Base(DeclarativeBase):
    type_annotation_map = TYPE_MAP


outbox, trail, retention_clock = service_tables(Base, "registration")
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
    child: Mapped[dict] = mapped_column(SealedJSON("draft_child"), default=dict)
    parent: Mapped[dict] = mapped_column(SealedJSON("draft_parent"), default=dict)
    address: Mapped[dict] = mapped_column(SealedJSON("draft_address"), default=dict)     # resolved by the registry
    email_code: Mapped[dict | None] = mapped_column(SealedJSON("draft_email_code"), nullable=True)
    email_verified: Mapped[str | None] = mapped_column(Sealed("draft_email_verified"), nullable=True)
    application_id: Mapped[str | None] = mapped_column(sa.String(36), nullable=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (sa.Index("ux_accounts_email_hash", "email_hash", unique=True),)
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    email: Mapped[str] = mapped_column(Sealed("account_email", hashed_as="email"))
    email_hash: Mapped[str] = mapped_column(sa.String(64))     # of the e-mail in lower case: unique
    password_hash: Mapped[str | None] = mapped_column(sa.String(200), nullable=True)
    pin: Mapped[str] = mapped_column(Sealed("parent_pin", hashed_as="pin"))
    pin_hash: Mapped[str] = mapped_column(sa.String(64), index=True)   # ix_accounts_pin_hash
    surname: Mapped[str] = mapped_column(Sealed("parent_surname"))
    name: Mapped[str] = mapped_column(Sealed("parent_name"))
    patronymic: Mapped[str | None] = mapped_column(Sealed("parent_patronymic"), nullable=True)
    phone: Mapped[str] = mapped_column(Sealed("parent_phone"))
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
        sa.Index("ux_applications_live_child_pin", "child_pin_hash", unique=True,
                 postgresql_where=LIVE, sqlite_where=LIVE),
    )
    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    account_id: Mapped[str] = mapped_column(sa.ForeignKey("accounts.id"), index=True)
    country: Mapped[str] = mapped_column(sa.String(2))
    child_pin: Mapped[str] = mapped_column(Sealed("child_pin", hashed_as="pin"))
    child_pin_hash: Mapped[str] = mapped_column(sa.String(64))
    child_surname: Mapped[str] = mapped_column(Sealed("child_surname"))
    child_name: Mapped[str] = mapped_column(Sealed("child_name"))
    child_patronymic: Mapped[str | None] = mapped_column(Sealed("child_patronymic"), nullable=True)
    child_birth_date: Mapped[date] = mapped_column(sa.Date)
    child_sex: Mapped[str | None] = mapped_column(sa.String(6), nullable=True)
    parent: Mapped[dict] = mapped_column(SealedJSON("application_parent"))    # role, names, PIN, identity document
    address: Mapped[dict] = mapped_column(SealedJSON("application_address"))  # codes, house, flat, coordinates, names
    phone: Mapped[str] = mapped_column(Sealed("parent_phone"))
    email: Mapped[str] = mapped_column(Sealed("parent_email"))
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
