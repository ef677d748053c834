"""The one place the verification service is put together from its
settings: the pages (api/), `kezek staff-add` (cli.py), the consumer of
facts (consumers.py) and the tests all build it here."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from kezek.db import make_session_factory, service_engine
from kezek.files import SealedFiles
from kezek.settings import Settings
from services.verification import domain as d
from services.verification.readmodel.ingest import Ingest
from services.verification.referrals import ReferralCommands, TemporalReferrals
from services.verification.settings import as_settings, policy_of
from services.verification.usecases.abuse import Abuse
from services.verification.usecases.audit import AuditSearch
from services.verification.usecases.cases import Cases
from services.verification.usecases.certificates import Certificates
from services.verification.usecases.context import Context, StaffView, now_utc
from services.verification.usecases.family import Family
from services.verification.usecases.districts import DistrictOffice
from services.verification.usecases.children import Children
from services.verification.usecases.kindergartens import KindergartenDesk
from services.verification.usecases.staff import StaffAccounts
from services.verification.usecases.vouchers import Vouchers


@dataclass
class Verification:
    """The service's use cases, one object per group."""

    policy: d.VerificationPolicy
    sessions: sessionmaker[Session]
    staff: StaffAccounts
    cases: Cases
    certificates: Certificates
    abuse: Abuse
    vouchers: Vouchers
    audit: AuditSearch
    family: Family
    ctx: Context
    kindergartens: KindergartenDesk
    districts: DistrictOffice
    children: Children
    engine: Engine | None = None      # set when built here from the settings' URL

    def audit_denied(self, actor: StaffView, subject: str) -> None:
        self.ctx.record_denied(actor, subject)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def build(settings: Settings | None = None, *, sessions: sessionmaker[Session] | None = None,
          referrals: ReferralCommands | None = None, clock: Callable[[], datetime] | None = None,
          hasher: PasswordHasher | None = None, queue=None, files: SealedFiles | None = None) -> Verification:
    """The service from its settings; `sessions`, `referrals`, `clock`,
    `hasher`, `queue` (the queue's API, services/verification/queue.py) and
    `files` (where scans are kept) replace what the settings would give (tests)."""
    settings = as_settings(settings)
    policy = policy_of(settings)
    engine = None
    if sessions is None:
        engine, sessions = database(settings)
    if referrals is None:
        referrals = TemporalReferrals(settings.temporal_address, settings.temporal_namespace)
    ctx = Context(sessions, policy=policy, referrals=referrals, clock=clock or now_utc,
                  files=files or scan_files(settings))
    if queue is None:
        from kezek.trust import ServiceKeys
        from services.verification.queue import QueueDesk

        queue = QueueDesk(settings.url_of("queue"), ServiceKeys.from_settings(settings))
    return Verification(
        policy=policy, sessions=sessions,
        staff=StaffAccounts(ctx, hasher=hasher, secret=settings.secret_key.get_secret_value().encode()),
        cases=Cases(ctx), certificates=Certificates(ctx), abuse=Abuse(ctx), vouchers=Vouchers(ctx),
        audit=AuditSearch(ctx), family=Family(ctx), ctx=ctx, kindergartens=KindergartenDesk(ctx, queue),
        children=Children(ctx, queue),
        districts=DistrictOffice(ctx, queue), engine=engine)


def database(settings: Settings) -> tuple[Engine, sessionmaker[Session]]:
    """The service's own database (kezek_verification, or its SQLite file)."""
    engine = service_engine(as_settings(settings), "verification")
    return engine, make_session_factory(engine)


def scan_files(settings: Settings) -> SealedFiles:
    """Where the scans are kept, sealed with the service's keys."""
    from services.verification.files import build_files

    return build_files(settings)


def build_ingest(settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None) -> Ingest:
    """What the consumer applies to each fact (the read model and the abuse rule)."""
    return Ingest(policy_of(as_settings(settings)), clock or now_utc)
