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
    # E-mail codes an hour to one address (any draft) and from one client.
    codes_per_address_per_hour: int = 5
    codes_per_client_per_hour: int = 30


registration_settings = RegistrationSettings.of
