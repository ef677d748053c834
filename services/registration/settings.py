"""Registration's settings: the shared ones plus what only it needs."""
from __future__ import annotations

from pydantic import SecretStr

from kezek.settings import Settings


class RegistrationSettings(Settings):
    """The shared settings plus what only registration needs."""

    tunduk_issuer: str = ""              # empty: single sign-on is off
    tunduk_client_id: str = "kezek"
    tunduk_client_secret: SecretStr = SecretStr("")
    tunduk_pin_claim: str = "pin"
    # Requests a minute registration hears per client address (as the
    # gateway passes it), per draft and per signed-in account; beyond: 429.
    registration_requests_per_client: int = 600
    registration_requests_per_draft: int = 60
    registration_requests_per_account: int = 600
    # The rate limits' counts reach the shared table in batches, at most
    # this long after the requests, and at once as a key nears its limit
    # (kezek/ratelimit.py); 0: one upsert, in a transaction of its own, per
    # key and request (two a draft's step: 11 commits of 17 a whole
    # application before issue 15).
    rate_limit_flush_seconds: float = 1.0
    # Connections to its database the API keeps open: as many as requests it
    # serves at once, so a busy moment does not open and close a connection
    # per request beyond them (a new PostgreSQL backend each time).
    registration_db_pool_size: int = 20
    # E-mail codes an hour to one address (any draft) and from one client.
    codes_per_address_per_hour: int = 5
    codes_per_client_per_hour: int = 30


registration_settings = RegistrationSettings.of
