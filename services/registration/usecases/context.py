"""What every registration use case shares: the database, the address
registry, the clock, the keys, the audit trail, and who is calling."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.orm import Session, sessionmaker

from kezek.calendar import timezone
from kezek.db import aware
from kezek.trust import Principal, service_principal
from services.registration import domain as d
from services.registration.address import AddressRegistry
from services.registration.limits import Limits
from services.registration.models import Account, Application, trail
from services.registration.oidc import OidcProvider
from services.registration.sealing import Sealer

def refuse(field_: str, code: str, **params) -> d.RegistrationRefused:
    return d.RegistrationRefused([d.FieldError(field_, code, tuple((k, str(v)) for k, v in params.items()))])


class NotFound(Exception):
    pass


def family_of(s: Session, account_id: str):
    """The parent's account and its applications, oldest first."""
    account = s.get(Account, account_id)
    if account is None:
        raise NotFound("account")
    return account, s.scalars(sa.select(Application).where(Application.account_id == account_id)
                              .order_by(Application.submitted_at)).all()


class Unauthorized(Exception):
    """Wrong login or password, or an unknown session. `retry_after`: the
    seconds a throttled client waits before it is heard again."""

    def __init__(self, code: str = "login_failed", retry_after: int | None = None):
        super().__init__(code)
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True)
class Caller:
    """Who acts (the verified principal of the service token) and from
    which client address the gateway says the person came."""

    principal: Principal = field(default_factory=lambda: service_principal("registration"))
    client: str = ""


ITSELF = Caller()


class KindergartenCheck:
    """Which of some kindergarten ids the queue does not know (see
    `services.registration.kindergartens`); None: no check."""

    def unknown(self, ids: list[str]) -> list[str]:  # pragma: no cover - interface
        raise NotImplementedError


class Context:
    def __init__(self, sessions: sessionmaker[Session], registry: AddressRegistry, *,
                 code_key: bytes, country: str = "KG", public_url: str = "http://127.0.0.1:8000",
                 categories: tuple[str, ...] = d.DEFAULT_CATEGORIES,
                 oidc: OidcProvider | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 hasher: PasswordHasher | None = None,
                 kindergartens: KindergartenCheck | None = None,
                 limits: Limits = Limits()):
        self.sessions = sessions
        self.registry = registry
        self.code_key = code_key
        self.sealer = Sealer(code_key)
        self.country = country
        self.public_url = public_url.rstrip("/")
        self.categories = categories
        self.oidc = oidc
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self.kindergartens = kindergartens
        self.limits = limits
        # Verifying against this when the login is unknown keeps the answer
        # time the same, so timing does not reveal who has an account.
        self._dummy_hash = self.hasher.hash(d.new_token())

    def today(self) -> date:
        return self.clock().astimezone(timezone(self.country)).date()

    def audit(self, s: Session, by: Caller, action: str, subject: str, *, outcome: str = "ok",
              who: Principal | None = None, **details) -> None:
        """A state change, in its own transaction, with the verified actor
        (`who` when the use case itself verified a person, e.g. a password)."""
        if by.client:
            details["client"] = by.client
        trail.record(s, who or by.principal, action, subject, outcome=outcome,
                     details={k: v for k, v in details.items() if v is not None})
