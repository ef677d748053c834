"""The one place the registration service is built: the API, the consumer,
the background jobs and the importer all get it from `build`."""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx
from argon2 import PasswordHasher

from kezek.client import SyncServiceClient
from kezek.db import make_session_factory, service_engine
from kezek.settings import Settings
from kezek.trust import ServiceKeys
from services.registration.address import AddressRegistry, ReferenceAddressRegistry
from services.registration.kindergartens import QueueKindergartens
from services.registration.limits import Limits
from services.registration.oidc import OidcProvider
from services.registration.service import RegistrationService
from services.registration.settings import registration_settings


def build(settings: Settings | None = None, *, registry: AddressRegistry | None = None,
          oidc: OidcProvider | None = None, clock: Callable[[], datetime] | None = None,
          hasher: PasswordHasher | None = None, queue_transport: httpx.BaseTransport | None = None,
          keys: ServiceKeys | None = None) -> RegistrationService:
    settings = registration_settings(settings)
    url = settings.database_url_for("registration")
    pool = ({"pool_size": settings.registration_db_pool_size, "max_overflow": settings.registration_db_pool_size}
            if url.startswith("postgresql") else {})
    engine = service_engine(settings, "registration", url=url, **pool)
    if oidc is None and settings.tunduk_issuer:
        oidc = OidcProvider(settings.tunduk_issuer, settings.tunduk_client_id,
                            settings.tunduk_client_secret.get_secret_value(), pin_claim=settings.tunduk_pin_claim)
    queue = SyncServiceClient(settings.url_of("queue"), keys=keys or ServiceKeys.from_settings(settings),
                              caller="registration", audience="queue", transport=queue_transport, timeout=5.0)
    extra = {k: v for k, v in (("clock", clock), ("hasher", hasher)) if v is not None}
    return RegistrationService(
        make_session_factory(engine), registry or ReferenceAddressRegistry(country=settings.country),
        code_key=settings.secret_key.get_secret_value().encode(), country=settings.country,
        public_url=settings.public_url or settings.url_of("gateway"), oidc=oidc,
        kindergartens=QueueKindergartens(queue),
        limits=Limits(codes_per_address_per_hour=settings.codes_per_address_per_hour,
                      codes_per_client_per_hour=settings.codes_per_client_per_hour),
        **extra)
